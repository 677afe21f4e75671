"""Step 05's checks (labkit.steps.step_05) against answers defined here, through `outcome`.

The answers below read `llm_cache`, `ask_llm` and `cache_key` from this module's globals, as
a notebook's do from its namespace; the check lends them its own cache as `llm_cache`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref

import openai
import pytest

from labkit.exercises import Status
from labkit.singleflight import SingleFlight
from labkit.steps import step_05
from tests.step_checks import lab_mock  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("lab_mock")

KEY_VERSION = 1
REPLY_TTL_S = 60
MODEL = "gpt-4o"
llm_cache = None  # the check puts its own cache here while it runs
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_in_flight: dict = {}
_flights = SingleFlight()


def cache_key(model: str, messages: list[dict], **params) -> str:
    text = json.dumps([KEY_VERSION, model, messages, params], sort_keys=True)
    return f"llm:{hashlib.sha256(text.encode()).hexdigest()}"


def _messages(prompt: str) -> list[dict]:
    from labproject.ai.llm import messages_for

    return messages_for(prompt)


async def ask_llm(model: str, messages: list[dict], **params) -> str:
    from labproject.ai.llm import client_options

    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = openai.AsyncOpenAI(**client_options() | {"max_retries": 0})
    completion = await _clients[loop].chat.completions.create(
        model=model, messages=messages, **params
    )
    return completion.choices[0].message.content


def make_cached_reply(*, key=cache_key, on_error=None, pop_on_failure=True, shield=True):
    """The master's shape; the options make it wrong in known ways."""

    async def ask_and_store(key_, model, messages, params, slot):
        try:
            reply = await ask_llm(model, messages, **params)
        except openai.OpenAIError:
            if pop_on_failure:
                _in_flight.pop(slot, None)
            if on_error is None:
                raise
            reply = on_error
            if reply == "":
                return reply
        await llm_cache.aset(key_, reply, timeout=REPLY_TTL_S)
        _in_flight.pop(slot, None)
        return reply

    async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
        messages = _messages(prompt)
        k = key(model, messages, **params)
        reply = await llm_cache.aget(k)
        if reply is not None:
            return reply
        slot = (asyncio.get_running_loop(), k)
        if slot not in _in_flight:
            _in_flight[slot] = asyncio.ensure_future(
                ask_and_store(k, model, messages, params, slot)
            )
        if not shield:
            return await _in_flight[slot]
        return await asyncio.shield(_in_flight[slot])

    return cached_reply


async def with_singleflight(prompt: str, *, model: str = MODEL, **params) -> str:
    """Correct but different: the kit's SingleFlight instead of a dict of tasks."""
    messages = _messages(prompt)
    key = cache_key(model, messages, **params)
    cached = await llm_cache.aget(key)
    if cached is not None:
        return cached

    async def call():
        reply = await ask_llm(model, messages, **params)
        await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
        return reply

    return await _flights.do(key, call)


def _outcome(cached_reply):
    return step_05.q2.outcome({"cached_reply": cached_reply}, log=False)


@pytest.mark.parametrize("answer", [make_cached_reply(), with_singleflight])
def test_right_single_flights_pass(answer):
    outcome = _outcome(answer)
    assert outcome.status is Status.CORRECT, outcome.message
    assert "temperature=0.9: 1 call" in outcome.message
    assert "whose first caller left: 1 LLM call, not cancelled" in outcome.message


def test_a_key_without_parameters_is_named():
    outcome = _outcome(
        make_cached_reply(key=lambda model, messages, **_: cache_key(model, messages))
    )
    assert outcome.status is Status.INCORRECT
    assert "leaves the parameters out" in outcome.message and "temperature" in outcome.message


def test_an_empty_reply_during_an_outage_is_named():
    outcome = _outcome(make_cached_reply(on_error=""))
    assert outcome.status is Status.INCORRECT
    assert "instead of raising" in outcome.message and "''" in outcome.message


def test_a_cached_failure_is_named_as_such_not_as_the_in_flight_dict():
    outcome = _outcome(make_cached_reply(on_error="Sorry, unavailable."))
    assert outcome.status is Status.INCORRECT
    assert "a failure was cached" in outcome.message and "in-flight" not in outcome.message


def test_an_entry_kept_after_a_failure_is_named_as_the_in_flight_dict():
    outcome = _outcome(make_cached_reply(pop_on_failure=False))
    assert outcome.status is Status.INCORRECT
    assert "in-flight dict" in outcome.message and "0 new LLM calls" in outcome.message


def _key_outcome(fn):
    return step_05.q1.outcome({"cache_key": fn}, log=False)


def test_a_canonical_key_passes_and_a_bump_is_seen():
    outcome = _key_outcome(cache_key)
    assert outcome.status is Status.CORRECT, outcome.message
    assert "✓ KEY_VERSION bumped: new key" in outcome.message


def test_a_key_without_parameters_fails_05_1():
    def no_params(model, messages, **params):
        return cache_key(model, messages)

    outcome = _key_outcome(no_params)
    assert outcome.status is Status.INCORRECT
    assert "temperature 0.0 → 0.9 kept the same key" in outcome.message


def test_a_shared_call_cancelled_with_a_leaving_caller_is_named():
    outcome = _outcome(make_cached_reply(shield=False))
    assert outcome.status is Status.INCORRECT
    assert "the first caller left" in outcome.message and "asyncio.shield" in outcome.message
