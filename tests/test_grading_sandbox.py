"""The grading sandbox itself: what code inside it can see, reach and leave behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from labkit.grading.sandbox import (
    Layout,
    Limits,
    bwrap_argv,
    limit_resources,
    sandbox_env,
    unusable_reason,
)
from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json, os, socket, sys
from pathlib import Path
facts = {"uid": os.getuid(), "env": sorted(os.environ)}
facts["solutions"] = Path(sys.argv[1]).exists()
facts["tests"] = Path(sys.argv[2]).exists()
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[3])), timeout=2).close()
    facts["host_port"] = "reached"
except OSError as exc:
    facts["host_port"] = type(exc).__name__
try:
    Path(sys.argv[4]).write_text("x")
    facts["outside_write"] = "written"
except OSError as exc:
    facts["outside_write"] = type(exc).__name__
Path("/grade/work/mine.txt").write_text("ok")
print(json.dumps(facts))
"""


@pytest.fixture
def layout(tmp_path):
    require_service("bubblewrap", unusable_reason() is None, str(unusable_reason()))
    work, chan = tmp_path / "work", tmp_path / "chan"
    work.mkdir()
    chan.mkdir()
    return Layout(work, chan)


def run_inside(layout: Layout, code: str, *args: str, **options) -> subprocess.CompletedProcess:
    argv = bwrap_argv(layout, [sys.executable, "-c", code, *args])
    return subprocess.run(
        argv,
        env=sandbox_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: limit_resources(Limits()),
        **options,
    )


def test_inside_sees_no_secret_no_masters_no_host_network_and_writes_only_its_folder(
    layout, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-of-the-grader")
    listener = socket.create_server(("127.0.0.1", 0))
    outside = tmp_path / "outside.txt"
    try:
        done = run_inside(
            layout, PROBE, str(ROOT / "solutions"), str(ROOT / "tests"),
            str(listener.getsockname()[1]), str(outside),
        )  # fmt: skip
    finally:
        listener.close()
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["uid"] == 1000
    assert "OPENAI_API_KEY" not in facts["env"]
    assert set(facts["env"]) <= set(sandbox_env({})) | {"PWD"}
    assert facts["solutions"] is False and facts["tests"] is False
    assert facts["host_port"] in {"ConnectionRefusedError", "TimeoutError", "OSError"}
    assert facts["outside_write"] != "written" and not outside.exists()
    assert (layout.work / "mine.txt").read_text() == "ok"


def test_a_process_that_leaves_its_session_dies_with_the_sandbox(layout):
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time\\nwhile True:\\n"
        '    open("/grade/work/alive", "a").write("x")\\n    time.sleep(0.1)\'],'
        " start_new_session=True)\n"
        "time.sleep(60)"
    )
    argv = bwrap_argv(layout, [sys.executable, "-c", code])
    process = subprocess.Popen(argv, env=sandbox_env({}), start_new_session=True)
    alive = layout.work / "alive"
    deadline = time.monotonic() + 30
    while not alive.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive.exists()
    os.killpg(process.pid, 9)
    process.wait()
    time.sleep(0.5)
    size = alive.stat().st_size
    time.sleep(1.0)
    assert alive.stat().st_size == size  # nothing inside writes any more
