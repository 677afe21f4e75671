"""A learner's session, end to end: JupyterLab in Chromium runs a step's notebook top to bottom.

JupyterLab starts as the README's `./run-lab` starts it (on a temp copy of solutions/), and
Playwright drives Debian's Chromium: Run → Run All Cells, wait until no cell is busy, then
look at what the learner would see. A screenshot is kept in artifacts/.
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
# The step the test prefers, and what its solved notebook must show in the browser.
EXPECTED = {
    "02_async_views.ipynb": {"progress", "plot", "correct"},
    "00_welcome.ipynb": {"correct"},
}
SERVER_START_S = 60
RUN_ALL_S = 150
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


def pick_notebook() -> Path:
    for name in EXPECTED:
        path = ROOT / "solutions" / name
        if path.exists():
            return path
    pytest.fail(f"none of {', '.join(EXPECTED)} is in solutions/")


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


def test_a_solved_step_runs_in_jupyterlab_with_widgets_plots_and_checks(jupyter_lab):
    executable = chromium()
    require_service("chromium", executable is not None, "chromium is not installed (apt)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_service("chromium", False, "the playwright package is not installed")
    notebook = pick_notebook()
    expected = EXPECTED[notebook.name]
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
            prompts = wait_until_done(page, shot)
            seen = look(page)
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
    if "progress" in expected:
        assert seen["progress"] >= 1, "no progress-bar widget rendered (load runs show one)"
    if "plot" in expected:
        assert seen["plots"] >= 1, "no image/png plot rendered"
    if "correct" in expected:
        verdicts = re.findall(VERDICT, seen["text"], re.M)
        assert verdicts, "no check printed a verdict"
        assert set(verdicts) == {"Correct"}, verdicts


PLOT = ".jp-OutputArea .jp-RenderedImage img[src^='data:image/png']"
PROGRESS = ".jp-OutputArea .widget-hprogress, .jp-OutputArea .widget-progress"
# JupyterLab shows an exception as stderr text with IPython's traceback header.
STDERR = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
TRACEBACK = "Traceback (most recent call last)"
VERDICT = r"^(Correct|Incorrect|Not attempted yet|Check error|Timed out) ·"


def run_all(page) -> None:
    """Run → Run All Cells, from the menu bar, as a learner would."""
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def code_prompts(page) -> list[str]:
    return page.eval_on_selector_all(
        ".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent.trim())"
    )


def wait_until_done(page, shot: Path) -> list[str]:
    """Wait (bounded) until no cell is queued or running; return the code cells' prompts.

    Done means: no `[*]`, and every code cell numbered, or an error stopped the run.
    """
    deadline = time.monotonic() + RUN_ALL_S
    prompts = code_prompts(page)
    while time.monotonic() < deadline:
        prompts = code_prompts(page)
        busy = any("*" in p for p in prompts)
        numbered = all(re.search(r"\d", p) for p in prompts)
        if not busy and (numbered or tracebacks(page)):
            return prompts
        time.sleep(0.5)
    page.screenshot(path=str(shot))
    pytest.fail(f"the notebook was still running after {RUN_ALL_S} s: {prompts}")


def tracebacks(page) -> list[str]:
    texts = page.eval_on_selector_all(STDERR, "els => els.map(e => e.innerText)")
    return [text for text in texts if TRACEBACK in text]


def look(page) -> dict:
    """What the learner sees in the outputs: widgets, plots, errors and text."""
    return {
        "progress": page.locator(PROGRESS).count(),
        "plots": page.locator(PLOT).count(),
        "errors": tracebacks(page),
        "text": "\n".join(
            page.eval_on_selector_all(".jp-OutputArea-output", "els => els.map(e => e.innerText)")
        ),
    }
