"""What the tests of step checks share: the session's mock LLM, as `boot()` leaves it."""

from __future__ import annotations

import pytest


@pytest.fixture
def lab_mock(mock_llm, monkeypatch):
    """The session's mock LLM, as `labkit.steps.probes.lab_mock()` finds it after `boot()`."""
    import labkit.boot

    monkeypatch.setattr(labkit.boot, "_mock", mock_llm)
    mock_llm.reset()
    yield mock_llm
    mock_llm.configure(fault=None, faults={}, rpm=0, tpm=0)
