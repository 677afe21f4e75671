"""Step 07's checks (labkit.steps.step_07) against views defined here, through `outcome`."""

from __future__ import annotations

import asyncio
import json
import weakref

import openai
import pytest
from django.conf import settings
from django.http import StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from labkit.exercises import Status
from labkit.steps import step_07
from tests.step_checks import lab_mock  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("lab_mock")
_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def get_client() -> openai.AsyncOpenAI:
    from labproject.ai.llm import client_options

    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = openai.AsyncOpenAI(**client_options())
    return _clients[loop]


def sse(data) -> str:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"


def make_stream_chat(*, pump: bool = False, close: bool = True):
    """The master's streaming view; `pump` reads the stream in a task of its own."""
    from labproject.ai.api import read_prompt
    from labproject.ai.llm import messages_for

    def deltas(chunk):
        return chunk.choices[0].delta.content if chunk.choices else None

    @csrf_exempt
    async def stream_chat(request):
        prompt = read_prompt(request)
        stream = await get_client().chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
        )
        if pump:
            queue: asyncio.Queue = asyncio.Queue()

            async def feed():
                async for chunk in stream:
                    if deltas(chunk):
                        await queue.put(deltas(chunk))
                await queue.put(None)

            asyncio.ensure_future(feed())

            async def events():
                while (text := await queue.get()) is not None:
                    yield sse({"delta": text})
                yield sse("[DONE]")

        else:

            async def events():
                if close:
                    async with stream:
                        async for chunk in stream:
                            if deltas(chunk):
                                yield sse({"delta": deltas(chunk)})
                else:  # correct but different: no `async with`, Django still closes it
                    async for chunk in stream:
                        if deltas(chunk):
                            yield sse({"delta": deltas(chunk)})
                yield sse("[DONE]")

        return StreamingHttpResponse(events(), content_type="text/event-stream")

    return stream_chat


@pytest.mark.parametrize("close", [True, False])
def test_streams_that_stop_with_the_reader_pass(close):
    outcome = step_07.q1.outcome({"stream_chat": make_stream_chat(close=close)}, log=False)
    assert outcome.status is Status.CORRECT, outcome.message
    assert "stream cancelled with it" in outcome.message


def test_a_stream_read_by_a_background_task_is_named():
    outcome = step_07.q1.outcome({"stream_chat": make_stream_chat(pump=True)}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "hung up" in outcome.message and "counted it completed" in outcome.message
    assert "background task" in outcome.message


def make_deadline_view(*, retry_at_once: bool = False, per_attempt: bool = False):
    from labproject.ai.api import read_prompt
    from labproject.ai.llm import CallRecord, LLMFailure, failure_from, messages_for
    from labproject.ai.models import AICall

    async def create(prompt):
        while True:
            try:
                client = get_client().with_options(max_retries=0 if retry_at_once else 2)
                return await client.chat.completions.create(
                    model=settings.LLM_MODEL, messages=messages_for(prompt)
                )
            except openai.RateLimitError:
                if not retry_at_once:
                    raise

    @csrf_exempt
    async def chat_with_deadline(request):
        prompt = read_prompt(request)
        record = CallRecord(endpoint="chat", prompt=prompt)
        try:
            if per_attempt:  # the SDK's timeout only: retries and their waits are unbounded
                client = get_client().with_options(timeout=step_07.DEADLINE_S)
                completion = await client.chat.completions.create(
                    model=settings.LLM_MODEL, messages=messages_for(prompt)
                )
            else:
                async with asyncio.timeout(step_07.DEADLINE_S):
                    completion = await create(prompt)
        except TimeoutError:
            failure = LLMFailure(504, "llm_timeout", "no answer in time.")
        except openai.OpenAIError as exc:
            failure = failure_from(exc)
        else:
            record.succeeded(completion)
            await AICall.objects.acreate(**record.fields())
            return record.response()
        await AICall.objects.acreate(**record.failed(failure).fields())
        return failure.response()

    return chat_with_deadline


def test_a_deadline_that_waits_out_a_429_passes():
    outcome = step_07.q2.outcome({"chat_with_deadline": make_deadline_view()}, log=False)
    assert outcome.status is Status.CORRECT, outcome.message
    assert "While the LLM answered 429" in outcome.message, outcome.message


def test_retrying_a_429_at_once_is_named():
    view = make_deadline_view(retry_at_once=True)
    outcome = step_07.q2.outcome({"chat_with_deadline": view}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "Retrying a 429 at once" in outcome.message and "expected at most 3" in outcome.message


def test_a_per_attempt_timeout_is_named_under_a_429():
    view = make_deadline_view(per_attempt=True)
    outcome = step_07.q2.outcome({"chat_with_deadline": view}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "per-attempt `timeout=` does not cover those waits" in outcome.message


def make_per_user_limit(*, shared: bool = False):
    """The master's fixed window; `shared` counts everybody in one window."""
    import functools
    import math
    import time

    from django.core.cache import cache

    from labproject.ai.api import error_response

    def per_user_limit(view):
        @functools.wraps(view)
        async def limited(request, *args, **kwargs):
            now = time.time()
            window = int(now // step_07.RATE_WINDOW_S)
            user = "all" if shared else request.headers.get("X-User", "")
            key = f"test-ratelimit:{user}:{window}"
            await cache.aadd(key, 0, timeout=math.ceil(step_07.RATE_WINDOW_S) + 1)
            if await cache.aincr(key) > step_07.RATE_LIMIT:
                retry_after = max(1, math.ceil((window + 1) * step_07.RATE_WINDOW_S - now))
                headers = {"Retry-After": str(retry_after)}
                return error_response(429, "rate_limited", "too many.", headers)
            return await view(request, *args, **kwargs)

        return limited

    return per_user_limit


def test_a_per_user_window_passes_and_leaves_nothing_behind():
    from labproject.ai.models import AICall

    outcome = step_07.q3.outcome({"per_user_limit": make_per_user_limit()}, log=False)
    assert outcome.status is Status.CORRECT, outcome.message
    assert not AICall.objects.filter(endpoint__startswith="check 07.3").exists()
    assert not [name for name in step_07._LIMITED]


def test_one_counter_for_everybody_is_named():
    outcome = step_07.q3.outcome({"per_user_limit": make_per_user_limit(shared=True)}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "shared by everybody" in outcome.message
