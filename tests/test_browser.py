"""A learner's session, end to end: JupyterLab in Chromium runs steps 02 and 06 top to bottom.

JupyterLab starts as the README's `./run-lab` starts it (on a temp copy of solutions/), and
Playwright drives Debian's Chromium: Run → Run All Cells, wait until no cell is busy, then
look at what the learner would see: every plot an image (never `<Figure size …>` text), the
live chart of a load run redrawn while it ran, no progress bar red for a run without errors,
and the checks' verdicts. A screenshot of each notebook is kept in artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from labkit.services.base import free_port
from tests.conftest import require_service

pytestmark = [pytest.mark.slow, pytest.mark.service("chromium")]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
# Debian's Chromium, as root, on a machine with a closed network: no sandbox (root), and none
# of the background connections that would be refused many at a time.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The steps the test runs, and what each solved notebook must show in the browser.
EXPECTED = {
    "02_async_views.ipynb": {"progress", "plot", "correct", "reload"},
    "06_load_testing.ipynb": {"progress", "plot", "correct", "explorer"},
}
SERVER_START_S = 60
# 06 at LAB_SIZE=quick is a dozen short load runs: about 3 minutes on a busy 2-CPU machine.
RUN_ALL_S = 480
# A live chart must have been seen redrawn at least this many times during one load run.
LIVE_UPDATES = 3
# JupyterLab settings for the test: every cell stays in the DOM (no windowing), and no news
# or update toasts over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
        "doNotDisturbMode": True,
    },
}


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


@dataclass
class Lab:
    url: str
    token: str
    log: Path


@pytest.fixture
def jupyter_lab(tmp_path: Path) -> Iterator[Lab]:
    """JupyterLab on a temp copy of solutions/, as `./run-lab` runs it, on a free port."""
    notebooks = tmp_path / "notebooks"
    shutil.copytree(ROOT / "solutions", notebooks)
    settings = tmp_path / "lab-settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = free_port(), secrets.token_urlsafe(24)
    command = [
        str(Path(sys.executable).parent / "jupyter"),
        "lab",
        f"--notebook-dir={notebooks}",
        "--ServerApp.ip=127.0.0.1",
        f"--port={port}",
        "--no-browser",
        "--ServerApp.open_browser=False",
        f"--IdentityProvider.token={token}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")  # CI runs as root
    env = {
        **os.environ,
        "LAB_STATE_DIR": str(tmp_path / "state"),
        "LAB_SIZE": "quick",
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
    }
    log = tmp_path / "jupyter.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        _wait_for_server(server, lab)
        yield lab
    finally:
        _stop(server)


def _wait_for_server(server: subprocess.Popen, lab: Lab) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"jupyter lab exited ({server.returncode}):\n{lab.log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s:\n{lab.log.read_text()[-3000:]}")


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and whatever it started (kernels, and theirs), by process id."""
    try:
        family = psutil.Process(server.pid).children(recursive=True)
    except psutil.Error:
        family = []
    server.terminate()  # Jupyter shuts its kernels down on SIGTERM
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(5)
    _, alive = psutil.wait_procs(family, timeout=10)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.mark.timeout(RUN_ALL_S + 180)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_solved_step_runs_in_jupyterlab_with_widgets_plots_and_checks(jupyter_lab, name):
    executable = chromium()
    require_service("chromium", executable is not None, "chromium is not installed (apt)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("chromium", False, "the playwright package is not installed")
    notebook = ROOT / "solutions" / name
    expected = EXPECTED[name]
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"browser_{notebook.stem}.png"
    started = time.monotonic()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{jupyter_lab.url}/lab/tree/{notebook.name}?token={jupyter_lab.token}")
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
            # The kernel must be up before Run All, or JupyterLab drops the request.
            page.wait_for_selector(".jp-StatusBar-Widget:has-text('Idle')", timeout=60_000)
            run_all(page)
            prompts, redraws = wait_until_done(page, shot)
            seen = look(page)
            if "explorer" in expected:
                seen["explored"] = explore(page)
            if "reload" in expected:
                seen["after_reload"] = reload(page)
            if seen["progress"]:  # the load run's live widget, as it ended
                bar = page.locator(PROGRESS).first.locator(
                    "xpath=ancestor::div[contains(@class, 'jp-OutputArea-child')]"
                )
                bar.scroll_into_view_if_needed()
                bar.screenshot(path=str(shot.with_name(f"{shot.stem}_progress.png")))
            # The screenshot shows the first plot (or, without one, where the run ended).
            plot = page.locator(PLOT)
            (
                plot.first if plot.count() else page.locator(".jp-Cell").last
            ).scroll_into_view_if_needed()
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    took = time.monotonic() - started
    print(f"{notebook.name}: {len(prompts)} code cells in {took:.0f} s; screenshot {shot}")

    assert shot.stat().st_size > 20_000
    assert not seen["errors"], "\n\n".join(seen["errors"])[:4000]
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts), f"cells left unrun: {prompts}"
    assert "<Figure size" not in seen["text"] and "Figure size" not in seen["text"], (
        "a figure showed as text, not as an image"
    )
    if "progress" in expected:
        assert seen["progress"] >= 1, "no progress-bar widget rendered (load runs show one)"
        assert max(redraws.values(), default=0) >= LIVE_UPDATES, (
            f"no live chart was seen redrawn {LIVE_UPDATES} times during a run: {redraws}"
        )
        red = [run for run in seen["runs"] if run["danger"] and run["errors"] == 0]
        assert not red, f"red progress bars for runs without errors: {red}"
        assert seen["runs"] and all(run["errors"] is not None for run in seen["runs"])
    if "plot" in expected:
        assert seen["plots"] >= 1, "no image/png plot rendered"
    if "reload" in expected:
        widgets, images = seen["after_reload"]
        assert widgets >= 1, "after a save and a page reload no live widget was drawn again"
        assert images >= 1, "after a save and a page reload no plot was drawn again"
    if "explorer" in expected:
        assert re.search(r"measured \d+(\.\d+)? rps of a bound of", seen["explored"]), (
            f"the explorer's button measured nothing: {seen['explored']!r}"
        )
    if "correct" in expected:
        verdicts = re.findall(VERDICT, seen["text"], re.M)
        assert verdicts, "no check printed a verdict"
        assert set(verdicts) == {"Correct"}, verdicts
        # Correct is green on the page (JupyterLab's sanitizer keeps the colour), not plain.
        assert seen["verdict_colours"] and set(seen["verdict_colours"]) == {GREEN}, seen


PLOT = ".jp-OutputArea .jp-RenderedImage img[src^='data:image/png']"
PROGRESS = ".jp-OutputArea .widget-hprogress, .jp-OutputArea .widget-progress"
# JupyterLab shows an exception as stderr text with IPython's traceback header.
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
TRACEBACK = "Traceback (most recent call last)"
# A verdict, after its mark (✔, ✘, ...): labkit.exercises.richtext.VERDICTS.
VERDICT = r"^(?:\S )?(Correct|Incorrect|Not attempted yet|Check error|Timed out) ·"
LIVE = ".jp-OutputArea .labkit-live"
GREEN = "rgb(46, 125, 50)"  # richtext.VERDICTS["Correct"], #2e7d32
# The live chart's redraw counter, per chart, as the page shows it now.
REDRAWS = (
    "els => els.map(e => { const c = e.querySelector('.labkit-live-chart');"
    " return c ? Number(c.getAttribute('data-updates')) : 0; })"
)


def run_all(page) -> None:
    """Run → Run All Cells, from the menu bar, as a learner would."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def code_prompts(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())"
    )


def wait_until_done(page, shot: Path) -> tuple[list[str], dict[int, int]]:
    """Wait (bounded) until no cell is queued or running; return the prompts and redraws.

    Done means: no `[*]`, and every code cell numbered, or an error stopped the run. Meanwhile
    each live chart's redraw counter is read twice a second: `redraws` maps a chart's index
    to how many different values of it were seen, i.e. redraws watched as they happened.
    """
    deadline = time.monotonic() + RUN_ALL_S
    prompts = code_prompts(page)
    seen: dict[int, set[int]] = {}
    while time.monotonic() < deadline:
        for index, value in enumerate(page.eval_on_selector_all(LIVE, REDRAWS)):
            seen.setdefault(index, set()).add(value)
        prompts = code_prompts(page)
        busy = any("*" in p for p in prompts)
        numbered = all(re.search(r"\d", p) for p in prompts)
        if not busy and (numbered or tracebacks(page)):
            return prompts, {index: len(values) for index, values in seen.items()}
        time.sleep(0.5)
    page.screenshot(path=str(shot))
    pytest.fail(f"the notebook was still running after {RUN_ALL_S} s: {prompts}")


def tracebacks(page) -> list[str]:
    texts = page.eval_on_selector_all(STDERR, "els => els.map(e => e.innerText)")
    return [text for text in texts if TRACEBACK in text]


def reload(page) -> tuple[int, int]:
    """Save, reload the page, and count the live widgets and plots drawn again."""
    page.keyboard.press("Control+s")
    page.wait_for_selector(".jp-NotebookPanel-toolbar", timeout=10_000)
    time.sleep(2)  # the save round trip; the dirty marker is not reliable to wait on
    page.reload()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=60_000)
    page.wait_for_selector(".jp-StatusBar-Widget:has-text('Idle')", timeout=60_000)
    try:
        page.wait_for_selector(PROGRESS, timeout=30_000)
    except Exception:  # noqa: BLE001 - counted as none below
        pass
    return page.locator(PROGRESS).count(), page.locator(PLOT).count()


def explore(page) -> str:
    """Click the Little's-law explorer's button; return its status once the run is done."""
    button = page.locator(".jp-OutputArea button:has-text('measure this point')").first
    button.scroll_into_view_if_needed()
    button.click()
    status = button.locator("xpath=following-sibling::*[1]")
    status.filter(has_text=re.compile("measured |failed|rror")).wait_for(timeout=90_000)
    return status.inner_text()


def live_runs(page) -> list[dict]:
    """Each load run's dashboard: its last line, the errors it counted, its bar's colour."""
    runs = page.eval_on_selector_all(
        LIVE,
        "els => els.map(e => ({text: e.innerText,"
        " danger: !!e.querySelector('.progress-bar-danger')}))",
    )
    for run in runs:
        found = re.search(r"errors (\d+)|failed: (\d+) of|failed: (no) request", run["text"])
        # "failed: no request completed" (a run starved on a busy machine): every request failed.
        run["errors"] = None if not found else int(found.group(1) or found.group(2) or -1)
    return runs


def look(page) -> dict:
    """What the learner sees in the outputs: widgets, plots, errors and text."""
    return {
        "verdict_colours": page.eval_on_selector_all(
            ".jp-RenderedMarkdown span",
            "els => els.filter(e => /^. (Correct|Incorrect)$/.test(e.innerText.trim()))"
            ".map(e => getComputedStyle(e).color)",
        ),
        "runs": live_runs(page),
        "progress": page.locator(PROGRESS).count(),
        "plots": page.locator(PLOT).count(),
        "errors": tracebacks(page),
        "text": "\n".join(
            page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.innerText)")
        ),
    }
