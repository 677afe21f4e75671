"""Checks of steps 02 and 03 in-process: wrong answers named for their real cause, and
correct-but-different answers accepted (`labkit verify` proves the registered ones in a kernel).

Each answer is run as its exercise cell would be, in a namespace holding the notebook's
imports, and judged with `Exercise.outcome(namespace)` against the kit's mock LLM.
"""

from __future__ import annotations

import pytest

from labkit.exercises import Status
from tests.fixtures.answers import lab, run_answer, wrong  # noqa: F401 - lab is a fixture

pytestmark = [
    pytest.mark.usefixtures("lab"),
    # Wrong answers leak clients (one per task, per call): their sockets close at collection.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

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
        ("shields the LLM call from a hang-up", "left its LLM call running"),
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
    from labkit.steps.chat_probe import chat_view as _chat

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


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        ("list(queryset) in async code", "a query ran synchronously inside `async def`"),
        ("sync_to_async without await", "returns a coroutine until you `await` it"),
        ("counts only the listed calls", "count them all"),
        ("remembers the first answer", "not from a remembered answer"),
        ("oldest calls instead of the newest", "newest first"),
    ],
)
def test_recent_calls_wrong_answers_are_told_their_cause(name, cause):
    from labkit.steps import step_02

    assert cause in wrong(step_02.q2, name)


def test_recent_calls_through_sync_to_async_pass():
    from labkit.steps import step_02

    code = """
async def recent_calls(request):
    calls = await sync_to_async(list)(AICall.objects.order_by("-created", "-id")[:5])
    recent = [
        {"prompt": c.prompt[:60], "ok": c.ok, "latency_ms": round(c.latency_ms)} for c in calls
    ]
    return JsonResponse({"total": await sync_to_async(AICall.objects.count)(), "recent": recent})
"""
    for answer in (None, code):
        outcome = run_answer(step_02.q2, answer)
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
