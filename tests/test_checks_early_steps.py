"""Checks of steps 00-03 and 06 in-process: wrong answers named for their real cause, and
correct-but-different answers accepted (`labkit verify` proves the registered ones in a kernel).

Each answer is run as its exercise cell would be, in a namespace holding the notebook's
imports, and judged with `Exercise.outcome(namespace)` against the kit's mock LLM.
"""

from __future__ import annotations

import gc
import warnings

import pytest

from labkit.exercises import Status
from labkit.exercises.masters import master_for_step

pytestmark = [
    pytest.mark.usefixtures("lab"),
    # Wrong answers leak clients (one per task, per call): their sockets close at collection.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

PRELUDE = """
import asyncio, functools, json, time, weakref
import httpx, httpx2, openai
from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from labproject.ai.api import ApiError, read_prompt
from labproject.ai.llm import CallRecord, client_options, failure_from, messages_for
from labproject.ai.models import AICall, Chunk, Document
"""


@pytest.fixture
def lab(mock_llm, monkeypatch, tmp_path):
    """The kit's mock as boot() would hold it, reset around each test."""
    import labkit.boot

    monkeypatch.setattr(labkit.boot, "_mock", mock_llm)
    monkeypatch.setenv("LAB_CHECK_LOG", str(tmp_path / "checks.jsonl"))
    mock_llm.reset(config=True)
    yield mock_llm
    mock_llm.reset(config=True)
    with warnings.catch_warnings():
        # The leaked clients' sockets, closed here rather than at the end of the session.
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def run_answer(exercise, code: str | None = None):
    """Run the exercise's cell with `code` as its answer (None: the master's), then check."""
    master = master_for_step(exercise.id.split(".")[0])
    cell = master.cells[master.exercises[exercise.id].cells[-1]]
    namespace: dict = {"__name__": "__main__"}
    exec(PRELUDE, namespace)
    exec(cell.solution(hidden=True) if code is None else cell.with_answer(code), namespace)
    return exercise.outcome(namespace, log=False)


def wrong(exercise, name: str):
    outcome = run_answer(exercise, exercise.wrong_answers[name])
    assert outcome.status is Status.INCORRECT, outcome.text
    return outcome.message


# -- 02.1 -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_check():
    from labkit.steps import step_02

    return step_02.q1


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("never calls the LLM", "received no call"),
        ("reads request.POST", "JSON body is never read"),
        ("reads request.POST with a default", "JSON body is never read"),
        ("the sync OpenAI client inside async def", "blocked the event loop"),
        ("the whole old sync body in sync_to_async", "in worker threads"),
        ("the sync ORM logs the call", "sync ORM call ran inside `async def`"),
        ("the sync ORM only in the failure branch", "sync ORM call ran inside `async def`"),
        ("an LLM fault becomes a 500", "answered 500"),
        ("an LLM fault becomes 200 with an empty reply", "answered 200"),
        ("only malformed JSON and a missing prompt refused", "A JSON array"),
        ("no 400 for malformed JSON", "Malformed JSON"),
        ("no csrf_exempt", "csrf_exempt"),
    ],
)
def test_chat_wrong_answers_are_told_their_cause(chat_check, name, cause):
    message = wrong(chat_check, name)
    assert cause in message
    if name == "never calls the LLM":
        assert "blocks the event loop" not in message


def test_chat_fault_messages_say_what_the_llm_did(chat_check):
    message = wrong(chat_check, "an LLM fault becomes a 500")
    assert "the mock LLM answered 503" in message and "escaped the view" in message


@pytest.mark.parametrize(
    "variant",
    [
        None,
        "sync_to_async(AICall.objects.create)",
        "extra latency",
    ],
)
def test_chat_correct_answers_pass(chat_check, variant):
    from labkit.steps.step_02 import _chat

    code = {
        None: None,
        "sync_to_async(AICall.objects.create)": _chat(
            log="await sync_to_async(AICall.objects.create)(**record.fields())"
        ),
        "extra latency": _chat(
            "    await asyncio.sleep(0.3)\n    try:\n        prompt = read_prompt(request)\n"
            "    except ApiError as error:\n        return error.response()\n"
        ),
    }[variant]
    outcome = run_answer(chat_check, code)
    assert outcome.status is Status.CORRECT, outcome.text


# -- 03.1, 03.2 -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("a new client per call", "one per task or per call"),
        ("one module-level client", "second event loop"),
        ("lru_cache without the loop key", "second event loop"),
        ("one client per task", "one per task or per call"),
        ("a per-loop client on a one-connection pool", "waited for each other"),
    ],
)
def test_client_per_loop_wrong_answers_are_told_their_cause(name, cause):
    from labkit.steps import step_03

    assert cause in wrong(step_03.q1, name)


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("a pool of 5", "let only 5 through at once"),
        ("no limits", "the pool let 60 through at once"),
        ("a plain httpx client", "plain `httpx.AsyncClient`"),
        ("limits without a timeout", "the pool budget is 600 s"),
        ("one timeout for everything", "the read budget is 5 s"),
    ],
)
def test_pool_limits_wrong_answers_are_told_their_cause(name, cause):
    from labkit.steps import step_03

    assert cause in wrong(step_03.q2, name)


def test_pooling_masters_pass():
    from labkit.steps import step_03

    for exercise in (step_03.q1, step_03.q2):
        outcome = run_answer(exercise)
        assert outcome.status is Status.CORRECT, outcome.text
