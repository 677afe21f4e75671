"""`labkit mock-llm` and the package face: first line, port errors, options, imports."""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

import labkit.mock_llm
from labkit.mock_llm import PRESETS, MockLLM, MockLLMError, Settings
from labkit.mock_llm import cli as mock_cli

LABKIT = [sys.executable, "-m", "labkit", "mock-llm"]
URL_LINE = re.compile(r"^http://127\.0\.0\.1:(\d+)/v1$")


def first_line(process, timeout=30.0):
    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    return lines.get(timeout=timeout).rstrip("\n")


def get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_first_line_is_the_base_url_and_flags_become_settings():
    process = subprocess.Popen(
        [*LABKIT, "--preset", "instant", "--latency", "0.25", "--rpm", "7", "--fault", "503=0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = first_line(process)
        assert URL_LINE.match(line), line
        root = line.removesuffix("/v1")
        assert get_json(line + "/models")["object"] == "list"
        config = get_json(root + "/_mock/config")
        assert (config["latency_s"], config["rpm"], config["faults"]) == (0.25, 7, {"503": 0.1})
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert stderr == ""  # warnings only, and there were none: no access log


def test_port_in_use_is_a_one_line_error(busy_port):
    result = subprocess.run(
        [*LABKIT, "--port", str(busy_port)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert f"port {busy_port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_mock_llm_reports_a_taken_port(busy_port):
    with pytest.raises(MockLLMError, match=f"port {busy_port} on 127.0.0.1 is already in use"):
        MockLLM(port=busy_port).start()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--preset", "warp"], "preset='warp' is not a preset"),
        (["--fault", "boom=0.1"], "--fault='boom' is not a fault"),
        (["--ttft", "soon"], "ttft_s='soon' is not a latency"),
        (["--settings", "[1]"], "--settings must be a JSON object"),
        (["--settings", '{"rpn": 5}'], "unknown setting"),
    ],
)
def test_bad_options_fail_with_a_reason(args, message):
    result = subprocess.run([*LABKIT, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def parser():
    parser = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mock_cli.add_arguments(parser)
    return parser


def test_every_option_has_help():
    for action in parser()._actions:
        assert action.help and len(action.help) > 10, action.option_strings


def test_options_map_onto_settings():
    args = parser().parse_args(
        ["--preset", "gpt4-2023", "--connect-delay", "0", "--ttft", "0.5:1.5", "--tpm", "900",
         "--reply-tokens", "5:9", "--models", "a,b", "--fault", "cut=0.2", "--hang", "3",
         "--settings", '{"seed": 4}']
    )  # fmt: skip
    settings = Settings().updated(mock_cli.settings_changes(args))
    assert settings.preset == "gpt4-2023" and settings.connect_delay_s == 0
    assert settings.latency.ttft.to_json() == {"median": 0.5, "p95": 1.5}
    assert (settings.tpm, settings.reply_tokens, settings.models) == (900, (5, 9), ("a", "b"))
    assert (settings.faults, settings.hang_s, settings.seed) == ({"cut": 0.2}, 3.0, 4)


def test_preset_names_in_the_cli_match_the_presets():
    assert mock_cli.PRESET_NAMES == tuple(PRESETS)


def test_cli_module_imports_only_the_standard_library():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import labkit.mock_llm.cli\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(sorted(new - set(sys.stdlib_module_names) - {'labkit'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_public_names_are_pinned():
    assert labkit.mock_llm.__all__ == sorted(labkit.mock_llm.__all__)
    assert labkit.mock_llm.__all__ == [
        "ApiError", "DEFAULT_MODELS", "Distribution", "FAULT_KINDS", "LatencyModel", "MockLLM",
        "MockLLMApp", "MockLLMError", "MockLLMTransport", "MockService", "PRESETS", "Settings",
        "SettingsError", "count_tokens", "create_app", "reply_for",
    ]  # fmt: skip
    for name in labkit.mock_llm.__all__:
        assert getattr(labkit.mock_llm, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        labkit.mock_llm.Nope  # noqa: B018


def test_start_stop_without_with_frees_the_port():
    llm = MockLLM(preset="instant")
    assert llm.start() is llm and llm.running
    assert "running" in repr(llm)
    port, pid = llm.port, llm.pid
    llm.stop()
    llm.stop()  # twice is fine
    assert not llm.running and "stopped" in repr(llm)
    with pytest.raises(MockLLMError, match="not running"):
        llm.stats()
    with pytest.raises(OSError):
        os.kill(pid, 0)
    # The port is free again: a new mock can take it at once (despite TIME_WAIT leftovers).
    with MockLLM(preset="instant", port=port) as again:
        assert again.port == port and again.pid != pid


def alive(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return "\nState:\tZ" not in status.read()  # a zombie has exited
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_server_exits_when_its_parent_dies():
    code = (
        "import os, subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-m', 'labkit', 'mock-llm', '--preset', 'instant',"
        " '--exit-with-parent', str(os.getpid())], stdout=subprocess.PIPE, text=True)\n"
        "print(p.pid, p.stdout.readline().strip(), flush=True)\n"
        "os._exit(0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    pid, url = result.stdout.split()
    assert URL_LINE.match(url)
    deadline = time.monotonic() + 5
    while alive(int(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(int(pid)), "the orphaned mock kept running"
