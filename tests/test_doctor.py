"""`labkit doctor` and `labkit --help`: the preflight a learner runs first."""

from __future__ import annotations

import json
import os
import subprocess
import sys

LABKIT = [sys.executable, "-m", "labkit"]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*LABKIT, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_command():
    from labkit.cli import COMMANDS

    result = _run("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_doctor_passes_here_and_checks_the_mock_llm():
    result = _run("doctor", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    names = {f["name"]: f for f in report["findings"]}
    assert report["ok"] and names["python"]["ok"] and names["LLM"]["ok"]
    assert "mock" in names["LLM"]["detail"]
    assert {"state dir", "loopback", "CPUs", "memory", "Redis", "PostgreSQL"} <= set(names)


def test_doctor_honours_binder_limits():
    result = _run(
        "doctor", "--json", "--no-llm", env={"CPU_LIMIT": "1.0", "MEM_LIMIT": str(2 * 2**30)}
    )
    names = {f["name"]: f for f in json.loads(result.stdout)["findings"]}
    assert names["CPUs"]["detail"] == "1 (CPU_LIMIT)"
    assert names["memory"]["detail"] == "2.0 GiB (MEM_LIMIT)"


def test_doctor_fails_with_the_reason_when_the_state_dir_is_unwritable(tmp_path):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    result = _run("doctor", "--no-llm", env={"LAB_STATE_DIR": str(blocked / "state")})
    assert result.returncode == 1
    assert "The lab cannot run here: state dir" in result.stderr


def test_doctor_reports_an_unreachable_endpoint_without_the_key():
    secret = "sk-test-" + "x" * 20
    result = _run(
        "doctor",
        env={"LAB_LLM_BASE_URL": "http://127.0.0.1:9/v1", "LAB_LLM_API_KEY": secret},
    )
    assert result.returncode == 1
    assert "LLM" in result.stderr and "did not answer" in result.stderr
    assert secret not in result.stdout + result.stderr
