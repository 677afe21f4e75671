"""Step 07, production hardening: streaming, a total deadline, and a per-user rate limit.

Master: solutions/07_production.ipynb. In the notebook:

    from labkit.steps.step_07 import DEADLINE_S, RATE_LIMIT, RATE_WINDOW_S, q1, q2, q3
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
import time
from typing import Any

from labkit.exercises import Exercise, Incorrect
from labkit.steps.streaming import (
    _ask_mock,
    _events,
    _hang_up_mid_stream,
    _read_stream,
    _reply_for,
    _server_errors,
    _status_line,
    _upstream_end,
)
from labkit.steps.subject import experiment

__all__ = ["DEADLINE_S", "RATE_LIMIT", "RATE_WINDOW_S", "q1", "q2", "q3"]

# 07.1: a fixed latency puts the first token at a quarter of the whole reply (the mock's
# FIXED_TTFT_SHARE); a view that buffers sends its first event at the end.
STREAM_LATENCY_S = 1.2
FIRST_SHARE = 0.6  # the first event must come before this share of the whole response time
# 07.2: the total budget for the LLM call, retries included; a slow upstream to miss it.
DEADLINE_S = 1.0
GRACE_S = 1.0  # the 504 may come this much after the deadline on a busy machine
SLOW_S = 4.0
GIVE_UP_S = 6.0  # the check's client waits this long for any answer
CANCEL_WAIT_S = 1.5  # the upstream call must be cancelled within this
# A 429 from the LLM: at most this many calls within the deadline (the SDK's first try and its
# default two retries, which wait for Retry-After); a loop that retries at once makes dozens.
MAX_CALLS_ON_429 = 3
# 07.3: requests per user per window, and the burst that must hit it.
RATE_LIMIT, RATE_WINDOW_S = 5, 2.0
BURST = 8


def _require_async(view: Any, name: str) -> None:
    from labkit.steps.subject import is_async

    if not is_async(view):
        raise Incorrect(
            f"`{name}` is not an `async def` view: Django would run it in a thread, and the "
            "LLM call would hold that thread for its whole duration."
        )


class StreamingChat(Exercise):
    """07.1: the reply relayed as server-sent events while the LLM writes it.

    A correct answer: 200 `text/event-stream`, `data: {"delta": ...}` events carrying the
    LLM's reply in order and `data: [DONE]`; the first event long before the last (a fixed
    share of the whole time, judged against the same response's total); and when the reader
    hangs up after the first event, the upstream stream is cancelled (the mock counts it
    cancelled, not completed). Evidence: the check's own HTTP reads and the mock's counters.
    """

    id = "07.1"
    title = "Stream the reply as server-sent events"
    hints = [
        "Ask for a stream: `await client.chat.completions.create(..., stream=True)` returns an "
        "`AsyncStream`; iterate it with `async for`.",
        "Wrap the iteration in an `async def events():` generator that yields "
        '`sse({"delta": text})` for each chunk with content, then `sse("[DONE]")`, and return '
        '`StreamingHttpResponse(events(), content_type="text/event-stream")`.',
        "Django buffers a *sync* iterator completely before sending it (and warns about it): "
        "the generator must be `async def`, and nothing may collect the chunks into a list.",
    ]
    wrong_answers = {
        "a background task feeds the stream, deaf to hang-ups": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    queue = asyncio.Queue()

    async def pump():
        stream = await get_client().chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
        )
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    await queue.put(chunk.choices[0].delta.content)
        await queue.put(None)

    asyncio.ensure_future(pump())

    async def events():
        while (text := await queue.get()) is not None:
            yield sse({"delta": text})
        yield sse("[DONE]")

    return StreamingHttpResponse(events(), content_type="text/event-stream")
""",
        "reads the stream in a thread, deaf to hang-ups": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    def pump():
        with openai.OpenAI(**client_options()) as client:
            stream = client.chat.completions.create(
                model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk.choices[0].delta.content)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    loop.run_in_executor(None, pump)

    async def events():
        while (text := await queue.get()) is not None:
            yield sse({"delta": text})
        yield sse("[DONE]")

    return StreamingHttpResponse(events(), content_type="text/event-stream")
""",
        "collects the whole stream, then returns it": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    stream = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
    )
    events = [
        sse({"delta": chunk.choices[0].delta.content})
        async for chunk in stream
        if chunk.choices and chunk.choices[0].delta.content
    ]
    events.append(sse("[DONE]"))
    return StreamingHttpResponse(events, content_type="text/event-stream")
""",
        "a sync generator over the sync client's stream": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    stream = openai.OpenAI(**client_options()).chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
    )

    def events():
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield sse({"delta": chunk.choices[0].delta.content})
        yield sse("[DONE]")

    return StreamingHttpResponse(events(), content_type="text/event-stream")
""",
        "a plain for over the AsyncStream": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    stream = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
    )

    def events():
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield sse({"delta": chunk.choices[0].delta.content})
        yield sse("[DONE]")

    return StreamingHttpResponse(events(), content_type="text/event-stream")
""",
        "no text/event-stream content type": """
@csrf_exempt
async def stream_chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    stream = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt), stream=True
    )

    async def events():
        async with stream:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield sse({"delta": chunk.choices[0].delta.content})
        yield sse("[DONE]")

    return StreamingHttpResponse(events())
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, stream_chat) -> str:
        from labkit.steps.probes import ServedView, lab_mock, mock_settings, numbered

        _require_async(stream_chat, "stream_chat")
        llm = lab_mock()
        nonce = secrets.token_hex(4)
        prompt = f"check 07.1 {nonce}: explain streaming"
        with mock_settings(llm, latency_s=STREAM_LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
            async with ServedView(stream_chat, route="chat") as served:
                llm.reset()
                with _server_errors() as errors:
                    run = await _read_stream(served, prompt)
                streams = llm.stats()["streams_total"]
                log = served.log + errors
                expected = await _reply_for(llm, prompt)
                verdict = self._judge(run, streams, expected, numbered(log))
                gone = await self._hang_up(served, llm, f"check 07.1 {nonce}: then leave")
        return f"{verdict} {gone}"

    @staticmethod
    async def _hang_up(served: Any, llm: Any, prompt: str) -> str:
        await asyncio.sleep(0.1)  # the first run's connection closes; its call has ended
        before = await asyncio.to_thread(llm.stats)
        run = await _hang_up_mid_stream(served, prompt)
        if run["error"] or run["status"] != 200 or not run["first_s"]:
            raise Incorrect(
                "A second streamed request, read until its first event, got "
                f"{run['status'] or 'no answer'} {run['error']}: expected 200 and an event, "
                "as for the first request.",
            )
        # Until the upstream call ends either way (counters, not a time limit).
        ended = await _upstream_end(llm, before, wait_s=4 * STREAM_LATENCY_S + 2)
        if ended != "cancelled":
            raise Incorrect(
                f"A reader hung up right after the first event ({run['first_s']:.2f} s into a "
                f"{STREAM_LATENCY_S:g} s reply); the LLM's stream was not cancelled: the mock "
                + (
                    "counted it completed, read to its end"
                    if ended == "completed"
                    else "still had it running"
                )
                + ", for nobody. Something reads the upstream stream apart from the response "
                "(a background task, a thread), so Django's cancellation on disconnect never "
                "reaches it. Iterate the stream inside the response's `async def` generator, "
                "in `async with stream:` so leaving closes it."
            )
        return (
            f"A reader that hung up after the first event ({run['first_s']:.2f} s) had the "
            "LLM's stream cancelled with it."
        )

    @staticmethod
    def _judge(run: dict[str, Any], streams: int, expected: str, log: str) -> str:
        if run["error"]:
            raise Incorrect(
                f"The response broke off after {len(run['body'])} bytes "
                f"({run['error']}). What the server logged:",
                evidence=log or run["body"][:300],
            )
        if run["status"] != 200:
            raise Incorrect(
                f"POST /api/chat/ answered {run['status']}, expected 200. What the server logged:",
                evidence=log or run["body"][:300],
            )
        kind = run["content_type"]
        if not kind.startswith("text/event-stream"):
            raise Incorrect(
                f"The response's Content-Type is {kind!r}: a browser's EventSource (and most SSE "
                'clients) only read `text/event-stream`. Pass `content_type="text/event-stream"` '
                "to StreamingHttpResponse."
            )
        payloads = _events(run["body"])
        if not payloads or payloads[-1] != "[DONE]":
            raise Incorrect(
                "The stream should end with the event `data: [DONE]`; its last event is:",
                evidence=repr(payloads[-1][:200]) if payloads else "(no events at all)",
            )
        try:
            deltas = [json.loads(p)["delta"] for p in payloads[:-1]]
        except (ValueError, KeyError, TypeError):
            raise Incorrect(
                'Each event before [DONE] should carry JSON like {"delta": "text"}; got:',
                evidence="\n".join(repr(p[:120]) for p in payloads[:3]),
            ) from None
        if not streams:
            raise Incorrect(
                "The LLM was never asked to stream: call `create(..., stream=True)` and relay "
                "its chunks as they come."
            )
        share = run["first_s"] / run["total_s"] if run["total_s"] else 1.0
        measured = (
            f"first event after {run['first_s']:.2f} s, whole response {run['total_s']:.2f} s "
            f"({share:.0%}), {len(deltas)} events"
        )
        if share > FIRST_SHARE:
            raise Incorrect(
                f"{measured}: the events all came at the end, so nothing was streamed. "
                "Something collected the chunks first: a list, or a *sync* iterator, which "
                "Django consumes completely before sending (it warns about it). Yield from an "
                "`async def` generator."
            )
        text = "".join(str(d) for d in deltas)
        if text != expected:
            raise Incorrect(
                f"{measured}, but the events carry {len(text)} characters where the LLM's reply "
                f"has {len(expected)}: send every chunk's `delta.content`, in order.",
                evidence=f"yours: {text[:120]!r}\nLLM's: {expected[:120]!r}",
            )
        return (
            f"{measured}: the reader saw the reply begin at {share:.0%} of the time it took "
            f"whole, as `text/event-stream`, all {len(expected)} characters in order."
        )


def _retrying_in_deadline(loop: str, on_429: str, note: str = "") -> str:
    """A 07.2 view that retries the LLM call itself, inside the deadline (a wrong answer)."""
    return (
        _DEADLINE_HEAD
        + f"    client = get_client().with_options(max_retries=0){note}\n"
        + "    try:\n"
        + "        async with asyncio.timeout(DEADLINE_S):\n"
        + loop
        + "                try:\n"
        + "                    completion = await client.chat.completions.create(\n"
        + "                        model=settings.LLM_MODEL, messages=messages_for(prompt)\n"
        + "                    )\n"
        + "                    break\n"
        + "                except openai.RateLimitError:\n"
        + on_429
        + _DEADLINE_TAIL
    )


_DEADLINE_HEAD = """
@csrf_exempt
async def chat_with_deadline(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
"""
_DEADLINE_TAIL = """    except TimeoutError:
        failure = LLMFailure(504, "llm_timeout", f"no answer within {DEADLINE_S:g} s.")
    except openai.OpenAIError as exc:
        failure = failure_from(exc)
    else:
        record.succeeded(completion)
        await AICall.objects.acreate(**record.fields())
        return record.response()
    await AICall.objects.acreate(**record.failed(failure).fields())
    return failure.response()
"""


class Deadline(Exercise):
    """07.2: one total deadline for the LLM call, retries included, that cancels it.

    A correct answer: 200 with a reply when the LLM is quick; 504 within the deadline (plus a
    grace) when it is slow, with the upstream call cancelled (the mock counts it); the upstream
    call cancelled when the client hangs up; and when the LLM answers 429 (Retry-After far
    away), an error answer (429, 503 or 504, never 500) after at most MAX_CALLS_ON_429 calls,
    not a retry at once until the deadline. Evidence: the check's HTTP answers, the mock's
    request and cancellation counters.
    """

    id = "07.2"
    title = "A total deadline that cancels the upstream call"
    hints = [
        "`async with asyncio.timeout(DEADLINE_S):` around the awaited call bounds the whole "
        "call, the SDK's retries included; when it expires the call is cancelled and "
        "`TimeoutError` is raised.",
        'Catch `TimeoutError` and answer 504: `LLMFailure(504, "llm_timeout", ...)` has a '
        "`.response()`; log it like any failure with `record.failed(failure)`.",
        "The SDK's `timeout=` is per attempt: with `max_retries=2` a 1 s timeout can take 4 s. "
        "And a call run in a thread (`asyncio.to_thread`, `sync_to_async`) cannot be "
        "cancelled: the thread keeps talking to the LLM after you answered 504.",
    ]
    wrong_answers = {
        "retries a 429 at once until the deadline": _retrying_in_deadline(
            "            while True:\n",
            "                    continue  # try again at once: the deadline bounds it\n",
            note="  # the retries are ours",
        ),
        "twenty quick attempts inside the deadline": _retrying_in_deadline(
            "            for attempt in range(20):\n",
            "                    if attempt == 19:\n"
            "                        raise\n"
            "                    await asyncio.sleep(0.01)\n",
        ),
        "the SDK's per-attempt timeout, multiplied by retries": """
@csrf_exempt
async def chat_with_deadline(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    client = openai.AsyncOpenAI(**client_options() | {"timeout": DEADLINE_S})
    try:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    except openai.OpenAIError as exc:
        failure = failure_from(exc)
        await AICall.objects.acreate(**record.failed(failure).fields())
        return failure.response()
    finally:
        await client.close()
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "the sync client in a worker thread": """
@csrf_exempt
async def chat_with_deadline(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)

    def call():
        with openai.OpenAI(**client_options()) as client:
            return client.chat.completions.create(
                model=settings.LLM_MODEL, messages=messages_for(prompt)
            )

    try:
        async with asyncio.timeout(DEADLINE_S):
            completion = await asyncio.to_thread(call)
    except TimeoutError:
        failure = LLMFailure(504, "llm_timeout", f"no answer within {DEADLINE_S:g} s.")
        await AICall.objects.acreate(**record.failed(failure).fields())
        return failure.response()
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "the deadline fires, but becomes a 500": """
@csrf_exempt
async def chat_with_deadline(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    async with asyncio.timeout(DEADLINE_S):
        completion = await get_client().chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, chat_with_deadline) -> str:
        from labkit.steps.probes import ServedView, lab_mock, mock_settings, numbered

        _require_async(chat_with_deadline, "chat_with_deadline")
        llm = lab_mock()
        tag = f"check 07.2 {secrets.token_hex(4)}"
        quiet = {"rpm": 0, "tpm": 0, "faults": {}, "fault": None, "rate_window_s": 60.0}
        with mock_settings(llm, latency_s=0.2, **quiet):
            async with ServedView(chat_with_deadline, route="chat") as served:
                quick = await served.post("/api/chat/", json={"prompt": f"{tag} quick"})
                if quick.status_code != 200 or '"reply"' not in quick.text:
                    raise Incorrect(
                        f"With the LLM answering in 0.2 s, POST /api/chat/ answered "
                        f"{quick.status_code}, expected 200 with a reply. The server logged:",
                        evidence=numbered(served.log) or quick.text[:300],
                    )
                limited = await self._rate_limited(served, llm, tag, numbered)
                llm.configure(latency_s=SLOW_S, rpm=0)
                late = await self._late(served, llm, tag, numbered)
                gone = await self._hang_up(served, llm, tag)
        return (
            f"{limited} With the LLM taking {SLOW_S:g} s, {late} And a client that hung up "
            f"after 0.3 s had its upstream call cancelled {gone:.2f} s later."
        )

    @staticmethod
    async def _rate_limited(served: Any, llm: Any, tag: str, numbered: Any) -> str:
        """The LLM answers 429 with a Retry-After far beyond the deadline."""
        llm.configure(rpm=1, rate_window_s=60.0)
        await _ask_mock(llm, f"{tag} uses the one request of this minute")
        before = llm.stats()["requests_total"]
        started = time.perf_counter()
        try:
            response = await served.post(
                "/api/chat/", json={"prompt": f"{tag} limited"}, timeout=GIVE_UP_S
            )
        except Exception:  # httpx2's ReadTimeout: no answer at all
            raise Incorrect(
                f"While the LLM answered 429 (Retry-After: 60), no answer came within "
                f"{GIVE_UP_S:g} s: nothing bounds the whole call to {DEADLINE_S:g} s. The "
                "SDK waits Retry-After between its retries, and a per-attempt `timeout=` does "
                "not cover those waits: bound the whole call with `asyncio.timeout(DEADLINE_S)`."
            ) from None
        took = time.perf_counter() - started
        calls = llm.stats()["requests_total"] - before
        measured = (
            f"While the LLM answered 429 (Retry-After: 60), your view made {calls} LLM "
            f"call{'' if calls == 1 else 's'} and answered {response.status_code} after "
            f"{took:.2f} s"
        )
        if calls > MAX_CALLS_ON_429:
            raise Incorrect(
                f"{measured}; expected at most {MAX_CALLS_ON_429} calls (the SDK's retries, "
                "which wait for Retry-After). Retrying a 429 at once, with no back-off, hammers "
                "a provider that asked you to wait, and each attempt counts against your "
                "quota. Let the SDK retry (it honours Retry-After within the deadline), or "
                "answer the 429 yourself."
            )
        if response.status_code not in (429, 503, 504):
            cause = (
                " A 500 is a server error: an exception escaped the view (the deadline's "
                "`TimeoutError`, or the SDK's `RateLimitError`); catch it and answer with it."
                if response.status_code == 500
                else ""
            )
            raise Incorrect(
                f"{measured}; expected an error answer: 429 (passing the limit on, with "
                f"Retry-After), 503, or 504 once the deadline passed.{cause} What the server "
                "logged:",
                evidence=numbered(served.log) or response.text[:300],
            )
        return f"{measured}."

    @staticmethod
    async def _late(served: Any, llm: Any, tag: str, numbered: Any) -> str:
        before = llm.stats()["cancelled_total"]
        started = time.perf_counter()
        try:
            response = await served.post(
                "/api/chat/", json={"prompt": f"{tag} slow"}, timeout=GIVE_UP_S
            )
        except Exception:  # httpx2's ReadTimeout: no answer at all
            raise Incorrect(
                f"No answer within {GIVE_UP_S:g} s while the LLM took {SLOW_S:g} s per call: "
                f"nothing enforces a deadline of {DEADLINE_S:g} s."
            ) from None
        took = time.perf_counter() - started
        if response.status_code != 504:
            raise Incorrect(
                f"The slow call was answered {response.status_code} after {took:.2f} s, "
                "expected 504 Gateway Timeout: the upstream did not answer in time, which is "
                "not a bug in your server (500). What the server logged:",
                evidence=numbered(served.log) or response.text[:300],
            )
        if took > DEADLINE_S + GRACE_S:
            raise Incorrect(
                f"504 came after {took:.2f} s; the deadline is {DEADLINE_S:g} s in total. A "
                "per-attempt `timeout=` is multiplied by the SDK's retries (and their "
                "back-off): bound the whole call with `asyncio.timeout`."
            )
        waited = await _cancelled_since(llm, before)
        if waited is None:
            raise Incorrect(
                f"504 after {took:.2f} s, but the LLM call kept running: {CANCEL_WAIT_S:g} s "
                f"later the mock still had {llm.stats()['in_flight']} call(s) in flight and "
                "none cancelled. A call in a thread cannot be cancelled; await the async "
                "client so the deadline cancels it."
            )
        return f"your view answered 504 after {took:.2f} s and the upstream call was cancelled."

    @staticmethod
    async def _hang_up(served: Any, llm: Any, tag: str) -> float:
        before = llm.stats()["cancelled_total"]
        try:
            await served.post("/api/chat/", json={"prompt": f"{tag} gone"}, timeout=0.3)
        except Exception:  # the client's own ReadTimeout: it hangs up, as intended
            pass
        started = time.perf_counter()
        if await _cancelled_since(llm, before) is None:
            raise Incorrect(
                f"A client hung up 0.3 s into a {SLOW_S:g} s call; {CANCEL_WAIT_S:g} s later "
                "the LLM call was still running. Django cancels an async view's task when "
                "the client disconnects; only awaited calls are cancelled with it."
            )
        return time.perf_counter() - started


async def _cancelled_since(llm: Any, before: int) -> float | None:
    """Seconds until the mock counted a cancelled call after `before`, or None."""
    started = time.perf_counter()
    while time.perf_counter() - started < CANCEL_WAIT_S:
        if llm.stats()["cancelled_total"] > before:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    return None


# Views wrapped by the learner's `per_user_limit` for a check, by name, where the learner's
# code runs (the kernel, or the grading sandbox, which serves them from its namespace).
_LIMITED: dict[str, Any] = {}


@experiment("step_07.limited_view")
async def _limited_view(
    per_user_limit: Any, *, view_name: str, endpoint: str, drop: bool = False
) -> dict[str, Any]:
    """Wrap a view that logs one AICall row per request (`endpoint`, the user) and name it."""
    from labkit.exercises.namespace import user_namespace
    from labkit.grading.servant import describe

    if drop:
        if _LIMITED.pop(view_name, None) is not None:
            user_namespace().pop(view_name, None)
        return {}
    from django.http import JsonResponse

    from labproject.ai.models import AICall

    async def inner(request):
        user = request.headers.get("X-User", "")
        await AICall.objects.acreate(endpoint=endpoint, prompt=user, model="check")
        return JsonResponse({"ok": True})

    view = per_user_limit(inner)
    _LIMITED[view_name] = view
    user_namespace()[view_name] = view
    return {"kind": describe(view)["kind"]}


class PerUserLimit(Exercise):
    """07.3: a per-user fixed-window limit, 429 with Retry-After, the view not called then.

    A correct answer: BURST concurrent requests of one user give RATE_LIMIT x 200 and the rest
    429 with Retry-After (whole seconds within the window); the wrapped view runs only for the
    200s; another user is served meanwhile; the first user is served again after Retry-After.
    Evidence: the check's HTTP answers, and the rows the wrapped view writes per request.
    """

    id = "07.3"
    title = "A per-user rate limit with 429 and Retry-After"
    hints = [
        "A fixed window: the key names the user and the window, "
        '`f"ratelimit:{user}:{int(time.time() // RATE_WINDOW_S)}"`; '
        "`await cache.aadd(key, 0, timeout=...)` creates it, `await cache.aincr(key)` counts "
        "(atomically) and returns the new count.",
        "Over the limit, return `error_response(429, ...)` with a `Retry-After` header: the "
        "whole seconds until the window ends, at least 1. Do not call the view then.",
        "Give the key a timeout a little longer than the window, so old windows expire; a key "
        "without the window in it (or without a timeout) never lets the user back in.",
    ]
    wrong_answers = {
        "one counter for everybody": """
def per_user_limit(view):
    @functools.wraps(view)
    async def limited(request, *args, **kwargs):
        now = time.time()
        window = int(now // RATE_WINDOW_S)
        key = f"ratelimit:all:{window}"
        await cache.aadd(key, 0, timeout=math.ceil(RATE_WINDOW_S) + 1)
        if await cache.aincr(key) > RATE_LIMIT:
            retry_after = max(1, math.ceil((window + 1) * RATE_WINDOW_S - now))
            return error_response(
                429, "rate_limited", "too many requests.", {"Retry-After": str(retry_after)}
            )
        return await view(request, *args, **kwargs)

    return limited
""",
        "429 without Retry-After": """
def per_user_limit(view):
    @functools.wraps(view)
    async def limited(request, *args, **kwargs):
        key = f"ratelimit:{user_of(request)}:{int(time.time() // RATE_WINDOW_S)}"
        await cache.aadd(key, 0, timeout=math.ceil(RATE_WINDOW_S) + 1)
        if await cache.aincr(key) > RATE_LIMIT:
            return error_response(429, "rate_limited", "too many requests.")
        return await view(request, *args, **kwargs)

    return limited
""",
        "counts, but never resets": """
def per_user_limit(view):
    @functools.wraps(view)
    async def limited(request, *args, **kwargs):
        key = f"ratelimit:{user_of(request)}"
        await cache.aadd(key, 0, timeout=None)
        if await cache.aincr(key) > RATE_LIMIT:
            return error_response(
                429, "rate_limited", "too many requests.", {"Retry-After": "1"}
            )
        return await view(request, *args, **kwargs)

    return limited
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, per_user_limit) -> str:
        from labkit.exercises.remote import Remote
        from labkit.steps.probes import ServedView
        from labkit.steps.subject import Raised, run_experiment
        from labproject.ai.models import AICall

        token = secrets.token_hex(4)
        alice, bob = f"alice-{token}", f"bob-{token}"
        name, endpoint = f"_labkit_check_07_3_{token}", f"check 07.3 {token}"
        try:
            facts = await run_experiment(
                "step_07.limited_view", per_user_limit, view_name=name, endpoint=endpoint
            )
        except Raised as error:
            raise Incorrect(
                f"`per_user_limit(view)` raised {error}: it should return the view, wrapped."
            ) from None
        if facts.get("kind") != "async function":
            raise Incorrect(
                f"`per_user_limit(view)` returned {facts.get('kind', 'nothing')}, not an "
                "`async def` view: Django would run it in a thread, and the LLM call would "
                "hold that thread for its whole duration."
            )
        if isinstance(per_user_limit, Remote):
            view: Any = Remote(name, "async function", "function", None, per_user_limit.channel)
        else:
            view = _LIMITED[name]
        reached = AICall.objects.filter(endpoint=endpoint)
        try:
            async with ServedView(view, route="chat") as served:
                await _early_in_window()
                burst = await asyncio.gather(
                    *(
                        served.request("GET", "/api/chat/", headers={"X-User": alice})
                        for _ in range(BURST)
                    )
                )
                retry_after = self._judge_burst(burst, await reached.filter(prompt=alice).acount())
                other = await served.request("GET", "/api/chat/", headers={"X-User": bob})
                if other.status_code != 200:
                    raise Incorrect(
                        f"After {alice} used up the limit, another user's first request got "
                        f"{other.status_code}: the limit is shared by everybody. Key the "
                        "counter by the user."
                    )
                await asyncio.sleep(retry_after + 0.1)
                again = await served.request("GET", "/api/chat/", headers={"X-User": alice})
                if again.status_code != 200:
                    raise Incorrect(
                        f"{alice} waited the {retry_after} s Retry-After asked for, then got "
                        f"{again.status_code} again: the count never resets. Put the window "
                        "in the key (and give it a timeout), or refill a bucket over time."
                    )
        finally:
            await reached.adelete()
            await run_experiment(
                "step_07.limited_view", per_user_limit, view_name=name, endpoint=endpoint, drop=True
            )
        return (
            f"{BURST} requests at once from one user: {_status_line(burst)}, the view reached "
            f"{RATE_LIMIT} times; the 429s said Retry-After: {retry_after}. Another user was "
            "served meanwhile, and the first one again once the window had passed."
        )

    @staticmethod
    def _judge_burst(burst: list[Any], reached: int) -> int:
        statuses = [r.status_code for r in burst]
        served = statuses.count(200)
        limited = [r for r in burst if r.status_code == 429]
        odd = [r for r in burst if r.status_code not in (200, 429)]
        if odd:
            raise Incorrect(
                f"{BURST} requests from one user answered {_status_line(burst)}; expected only "
                "200s and 429s.",
                evidence=odd[0].text[:300],
            )
        if served != RATE_LIMIT:
            raise Incorrect(
                f"{BURST} requests at once from one user: {_status_line(burst)}, expected "
                f"{RATE_LIMIT} × 200 and {BURST - RATE_LIMIT} × 429 with a limit of "
                f"{RATE_LIMIT} per {RATE_WINDOW_S:g} s. Count with `cache.aincr` (atomic), not a "
                "get then a set: concurrent requests would all read the same count."
            )
        if reached != RATE_LIMIT:
            raise Incorrect(
                f"{len(limited)} requests were refused, but the view ran {reached} times: "
                "answer 429 *instead of* calling the view, so a refused request costs no "
                "LLM call."
            )
        values = [r.headers.get("retry-after") for r in limited]
        if None in values:
            raise Incorrect(
                "The 429 responses carry no Retry-After header: a client cannot tell when "
                "to come back, so it retries at once. Add `Retry-After: <seconds>`."
            )
        try:
            seconds = [int(v) for v in values]
        except ValueError:
            raise Incorrect(f"Retry-After should be whole seconds; got {values[0]!r}.") from None
        if not all(1 <= s <= math.ceil(RATE_WINDOW_S) for s in seconds):
            raise Incorrect(
                f"Retry-After values {sorted(set(seconds))}: expected the seconds until the "
                f"window ends, between 1 and {math.ceil(RATE_WINDOW_S)}."
            )
        return max(seconds)


async def _early_in_window() -> None:
    """Wait for the first half of a window, so a burst cannot straddle two fixed windows."""
    offset = time.time() % RATE_WINDOW_S
    if offset > RATE_WINDOW_S / 2:
        await asyncio.sleep(RATE_WINDOW_S - offset + 0.01)


q1 = StreamingChat()
q2 = Deadline()
q3 = PerUserLimit()
