"""Checks of steps 00, 01 and 06 in-process: answers drawn or inserted at check time, and
messages that name the real cause (`labkit verify` proves every registered wrong answer).
"""

from __future__ import annotations

import pytest

from labkit.exercises import Status
from tests.fixtures.answers import lab, run_answer, wrong  # noqa: F401 - lab is a fixture

pytestmark = pytest.mark.usefixtures("lab")


def test_ask_that_never_calls_the_llm_is_told_so():
    from labkit.steps import step_00

    message = wrong(step_00.q1, "imitates the mock's reply without calling it")
    assert "received no request" in message and "must call the LLM" in message


def test_ask_reusing_a_reply_is_told_so():
    from labkit.steps import step_00

    message = wrong(step_00.q1, "answers every prompt with the first reply")
    assert "reuses an earlier reply" in message


def test_ask_is_judged_at_the_mock_even_with_another_endpoint_configured(monkeypatch):
    """Issue 13: no "own endpoint" branch that accepts an `ask` the mock never heard from;
    issue 17: with the learner's endpoint configured, a right `ask` passes, measured at the mock."""
    from django.conf import settings

    from labkit.steps import step_00

    monkeypatch.setattr(settings, "LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setattr(settings, "LLM_MODEL", "my-model")
    code = step_00.q1.wrong_answers["imitates the mock's reply without calling it"]
    outcome = run_answer(step_00.q1, code)
    assert outcome.status is Status.INCORRECT, outcome.text
    assert "this check measures calls at the lab's mock" in outcome.message
    outcome = run_answer(step_00.q1)  # the master, whose settings point at the other endpoint
    assert outcome.status is Status.CORRECT, outcome.text
    assert "calls to 'mock-gpt'" in outcome.message
    assert "Your settings point the SDK at http://127.0.0.1:9/v1" in outcome.message
    assert settings.LLM_BASE_URL == "http://127.0.0.1:9/v1"  # and back afterwards
    assert settings.LLM_MODEL == "my-model"


def test_ask_master_passes():
    from labkit.steps import step_00

    outcome = run_answer(step_00.q1)
    assert outcome.status is Status.CORRECT, outcome.text
    assert "2 calls" in outcome.message


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("the last position plus one", "returned"),
        ("remembers each document's count", "It ran no query"),
        ("sync ORM in async code", "SynchronousOnlyOperation"),
    ],
)
def test_chunk_count_wrong_answers_are_told_their_cause(name, cause):
    from labkit.steps import step_00

    assert cause in wrong(step_00.q2, name)


def test_chunk_count_alternatives_pass():
    from labkit.steps import step_00

    for code in (
        None,
        "return await sync_to_async(Chunk.objects.filter(document_id=doc_id).count)()",
        "return len([c async for c in Chunk.objects.filter(document_id=doc_id)])",
    ):
        outcome = run_answer(step_00.q2, code)
        assert outcome.status is Status.CORRECT, (code, outcome.text)


def test_formulas_of_step_01_pass_and_their_slips_fail():
    from labkit.steps import step_01

    for exercise in (step_01.q1, step_01.q2, step_01.q3):
        assert run_answer(exercise).status is Status.CORRECT
        for name in exercise.wrong_answers:
            wrong(exercise, name)
    assert "exactly the timeout" in wrong(step_01.q2, "an answer right at the timeout counted")


def test_littles_law_slips_are_named():
    from labkit.steps import step_06

    assert run_answer(step_06.q1).status is Status.CORRECT
    assert "median" in wrong(step_06.q1, "the median instead of the mean")
    assert "pauses are missing" in wrong(step_06.q1, "forgets the think time")
