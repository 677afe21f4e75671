"""`labkit local-llm`: a real model behind llama.cpp's server, and the lab run against it.

The tests that need the model use the local-llm extra when it is installed (`.ci/run` installs
it); they skip on a laptop without it and fail under LAB_REQUIRE_SERVICES=1. Nothing is
installed at test time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import openai
import psutil
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion

from labkit.local_llm import LocalLLM, LocalLLMMissing, find_model, require_engine
from tests.conftest import require_service
from tests.notebook_runner import run_cells, text_of

ROOT = Path(__file__).resolve().parent.parent
LABKIT = [sys.executable, "-m", "labkit"]


def _extra_missing() -> str:
    try:
        require_engine()
        find_model()
    except LocalLLMMissing as exc:
        return str(exc)
    return ""


@pytest.fixture(scope="module")
def local_llm():
    """The real model, replies capped at 32 tokens so that each call takes seconds."""
    missing = _extra_missing()
    require_service("the local-llm extra", not missing, missing)
    with LocalLLM(max_tokens=32, ctx=1024) as llm:
        yield llm


def _client(llm: LocalLLM) -> openai.OpenAI:
    return openai.OpenAI(base_url=llm.base_url, api_key=llm.api_key, timeout=120, max_retries=0)


def test_a_missing_extra_says_what_to_install(monkeypatch):
    from labkit.local_llm import engine

    monkeypatch.setattr(engine, "ENGINE_MODULE", "xllamacpp_not_installed")
    with pytest.raises(LocalLLMMissing, match=r"pip install 'django-ai-async-lab\[local-llm\]'"):
        engine.require_engine()
    result = subprocess.run(
        [*LABKIT, "local-llm", "--model", "/nonexistent/model.gguf"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "no model file at /nonexistent/model.gguf" in result.stderr


def test_a_reply_strict_parses_with_the_official_sdk(local_llm):
    with _client(local_llm) as client:
        listed = client.models.with_raw_response.list()
        for entry in json.loads(listed.text)["data"]:
            Model.model_validate(entry, strict=True)  # `created` and all: a strict parse
        assert [m.id for m in client.models.list()] == [local_llm.alias]

        raw = client.chat.completions.with_raw_response.create(
            model=local_llm.alias,
            messages=[{"role": "user", "content": "Name one web framework written in Python."}],
            max_tokens=12,
        )
        completion = ChatCompletion.model_validate(json.loads(raw.text), strict=True)
        assert completion.choices[0].message.content.strip()  # the chat template is applied
        assert 0 < completion.usage.completion_tokens <= 12
        assert completion.usage.prompt_tokens > 0

        stream = client.chat.completions.create(
            model=local_llm.alias,
            messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=6,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
    assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 6
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_a_request_without_a_budget_is_capped_by_the_server(local_llm):
    with _client(local_llm) as client:
        completion = client.chat.completions.create(
            model=local_llm.alias,
            messages=[{"role": "user", "content": "Write a long story about a web server."}],
        )
    assert 0 < completion.usage.completion_tokens <= local_llm.max_tokens


def test_notebook_00_runs_top_to_bottom_against_the_real_model(local_llm, tmp_path):
    master = nbformat.read(ROOT / "solutions" / "00_welcome.ipynb", as_version=4)
    cells = [cell.source for cell in master.cells if cell.cell_type == "code"]
    # Then a cell that needs the mock's counters: on_mock() sends its calls there, and back.
    cells.append(
        "from labkit.boot import on_mock\n"
        "with on_mock() as mock:\n"
        "    mock.reset()\n"
        "    await ask('routed to the mock')\n"
        "    print('mock requests:', mock.stats()['requests_total'])\n"
        "print('after the block:', settings.LLM_BASE_URL)"
    )
    env = {**local_llm.exports(), "LAB_LLM_TIMEOUT_S": "120", "LAB_LLM_MAX_TOKENS": "24"}
    nb = run_cells(cells, tmp_path=tmp_path, timeout=300, env=env)
    assert text_of(nb.cells[-1]) == f"mock requests: 1\nafter the block: {local_llm.base_url}\n"
    boot_status = text_of(nb.cells[0])
    assert f"calls go to your endpoint at {local_llm.base_url}" in boot_status
    assert "use the kit's mock at http://127.0.0.1:" in boot_status
    call = next(text_of(c) for c in nb.cells if "reply:" in text_of(c))
    assert call.split("reply:", 1)[1].split("\n", 1)[0].strip()  # a real, non-empty reply
    # 00.1 measures at the mock: a right `ask` passes with the endpoint configured, and says so.
    checked = next(text_of(c) for c in nb.cells if c.source.strip() == "q1.check()")
    assert checked.startswith("Correct · 00.1"), checked[:300]
    assert f"Your settings point the SDK at {local_llm.base_url}" in checked


def test_notebook_07_runs_top_to_bottom_and_measures_the_real_models_queue(local_llm, tmp_path):
    master = nbformat.read(ROOT / "solutions" / "07_production.ipynb", as_version=4)
    cells = [cell.source for cell in master.cells if cell.cell_type == "code"]
    env = {
        **local_llm.exports(),
        "LAB_LLM_TIMEOUT_S": "120",
        "LAB_LLM_MAX_TOKENS": "24",
        "LAB_SIZE": "quick",
        "LAB_STATE_DIR": str(tmp_path / "state"),
    }
    nb = run_cells(cells, tmp_path=tmp_path, timeout=300, env=env)
    section = next(c for c in nb.cells if c.source.startswith("QUEUE_TOKENS"))
    assert text_of(section).startswith(f"Your endpoint at {local_llm.base_url}")
    mock_table, real_table = _markdown(section)
    assert mock_table.startswith("**the kit's mock") and "side by side" in mock_table
    assert real_table.startswith(f"**your endpoint ({local_llm.alias})**")
    assert real_table.count(" of 3 at once |") == 3
    assert any("image/png" in o.get("data", {}) for o in section.outputs)
    prose = next(c for c in nb.cells if c.source.startswith("def ms(seconds):"))
    assert f"**your endpoint ({local_llm.alias})**: alone, the first token" in _markdown(prose)[0]


def _markdown(cell: nbformat.NotebookNode) -> list[str]:
    return [
        o["data"]["text/markdown"] for o in cell.outputs if "text/markdown" in o.get("data", {})
    ]


def test_the_server_goes_when_its_owner_is_killed(tmp_path):
    missing = _extra_missing()
    require_service("the local-llm extra", not missing, missing)
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nfrom labkit.local_llm import LocalLLM\n"
            "llm = LocalLLM().start()\nprint(llm.pid, flush=True)\ntime.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    with owner:
        assert owner.stdout is not None
        server_pid = int(owner.stdout.readline())
        assert psutil.pid_exists(server_pid)
        owner.send_signal(signal.SIGKILL)  # no atexit, no stop(): only the reaper is left
        owner.wait(10)
        deadline = time.monotonic() + 15
        while _running(server_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _running(server_pid)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_local_llm_prints_the_exports_and_stops_cleanly():
    missing = _extra_missing()
    require_service("the local-llm extra", not missing, missing)
    proc = subprocess.Popen(
        [*LABKIT, "local-llm", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline() for _ in range(7)]
    exports = dict(
        line.removeprefix("export ").strip().split("=", 1)
        for line in lines
        if line.startswith("export ")
    )
    assert set(exports) == {"LAB_LLM_BASE_URL", "LAB_LLM_API_KEY", "LAB_LLM_MODEL"}
    with openai.OpenAI(base_url=exports["LAB_LLM_BASE_URL"], api_key="x") as client:
        assert [m.id for m in client.models.list()] == [exports["LAB_LLM_MODEL"]]
    server = [p for p in psutil.Process(proc.pid).children() if "engine" in " ".join(p.cmdline())]
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "# stopped (SIGINT)" in out
    assert server and not any(_running(p.pid) for p in server)
