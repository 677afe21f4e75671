"""`labkit doctor`'s LLM check makes one real chat completion, against a tiny fake server."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import openai
import pytest

from labkit.doctor import _budget, probe_llm
from labkit.servers.kernel import ASGIServer
from tests.fixtures.fake_llm import MODEL, fake_llm


@pytest.fixture
def empty_server():
    with ASGIServer(fake_llm("")) as server:
        yield server


def test_doctor_fails_an_endpoint_whose_replies_are_empty(empty_server):
    base_url = f"{empty_server.url}/v1"
    findings = probe_llm(openai, base_url, "sk-test", MODEL, "your endpoint")
    listed, reply = findings  # no speed to judge the budget by
    assert listed.ok and "1 models" in listed.detail
    assert not reply.ok and "the reply is empty" in reply.detail

    env = {**os.environ, "LAB_LLM_BASE_URL": base_url, "LAB_LLM_MODEL": MODEL}
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    assert "LLM reply: the reply is empty" in result.stderr


def test_doctor_passes_a_reply_and_reports_its_speed(monkeypatch):
    monkeypatch.setenv("LAB_LLM_MAX_TOKENS", "64")
    monkeypatch.setenv("LAB_LLM_TIMEOUT_S", "30")
    with ASGIServer(fake_llm("Async views free the worker while they wait.")) as server:
        listed, reply, budget = probe_llm(
            openai, f"{server.url}/v1", "sk-test", MODEL, "your endpoint"
        )
    assert listed.ok and reply.ok and budget.ok
    assert "8 tokens in" in reply.detail and "tokens/s" in reply.detail
    # The speed is measured, so the time a full reply takes depends on the machine's load.
    assert re.search(r"a full 64-token reply takes about \d+ s", budget.detail), budget.detail


def test_doctor_advises_a_longer_timeout_for_a_slow_model(monkeypatch):
    monkeypatch.setenv("LAB_LLM_MAX_TOKENS", "128")
    monkeypatch.setenv("LAB_LLM_TIMEOUT_S", "30")
    budget = _budget(tokens_per_s=2.0)
    assert not budget.ok and not budget.required
    assert budget.detail.endswith(
        "about 64 s at that speed; LAB_LLM_TIMEOUT_S is 30 s; "
        "raise it to 128 s or lower LAB_LLM_MAX_TOKENS"
    )


def test_doctor_fails_a_model_the_server_does_not_list(empty_server):
    listed, _ = probe_llm(openai, f"{empty_server.url}/v1", "sk-test", "gpt-4o", "your endpoint")
    assert not listed.ok
    assert f"LAB_LLM_MODEL=gpt-4o is not one it lists ({MODEL})" in listed.detail
