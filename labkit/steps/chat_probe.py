"""02.1's probes of a chat view served for real, each naming the likeliest cause of what it saw.

Every probe sends its own requests with prompts chosen at check time and judges what the
mock LLM counted (calls, calls at once, the SDK's sync/async header, faults) and what the
database holds (the AICall rows of those prompts). What Django logged is a claim of the
learner's process, used only to name a cause.
"""

from __future__ import annotations

import json
from typing import Any

from labkit.exercises import Incorrect
from labkit.steps.llmside import ASYNC_SDK, Seen, mock_replies, shorten
from labkit.steps.probes import mock_settings, numbered

# A view that awaits its LLM call lets many of a burst's calls wait at the LLM at once; one
# that blocks its loop lets exactly one. Any count above this is "side by side".
MIN_PEAK = 3
# Odd bodies a chat API must refuse with a 4xx before calling the LLM.
BAD_BODIES: list[tuple[str, bytes]] = [
    ("malformed JSON", b'{"prompt": "unfinished'),
    ('a JSON object without "prompt"', b'{"question": "no prompt field"}'),
    ("a JSON array", b'["Hello"]'),
    ('a number as "prompt"', b'{"prompt": 123}'),
    ("an empty body", b""),
]
JSON = {"content-type": "application/json"}
# A hang-up: the client leaves after HANG_UP_S, while the LLM takes HANG_S to answer.
HANG_UP_S, HANG_S = 0.5, 3.0
# What Django logs for a 500, and what it most likely means in this exercise.
CAUSES = [
    (
        "SynchronousOnlyOperation",
        "a sync ORM call ran inside `async def` (`AICall.objects.create`); use "
        "`await AICall.objects.acreate(...)`",
    ),
    (
        "MultiValueDictKeyError",
        "the view reads `request.POST`, which is empty for a JSON body: the JSON body is "
        "never read. Read it with `read_prompt(request)` (it parses `request.body`)",
    ),
    (
        "coroutine",
        "a coroutine was used as a value: something async was called without `await`",
    ),
    (
        "APIStatusError|InternalServerError|ServiceUnavailable|APIConnectionError|APITimeout",
        "the LLM's error escaped the view: catch `openai.OpenAIError` around the call",
    ),
]


def reply_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    reply = data.get("reply") if isinstance(data, dict) else None
    return reply if isinstance(reply, str) else None


BAD_SHAPE = 'the view assumed the body is a JSON object holding a string "prompt"'


def cause_in(
    log: list[str], otherwise: str = "the view raised; what Django logged says where"
) -> str:
    """The likeliest cause of a 500, read from what Django logged."""
    import re

    for pattern, cause in CAUSES:
        if any(re.search(pattern, line) for line in log):
            return cause
    return otherwise


async def rows_for(prompt: str) -> list[Any]:
    from labproject.ai.models import AICall

    return [row async for row in AICall.objects.filter(prompt=prompt).order_by("id")]


async def first_call(served: Any, llm: Any, prompt: str) -> str:
    """One JSON POST: 200, the mock's reply to that prompt, and its AICall row."""
    before = llm.stats()
    response = await served.post("/api/chat/", json={"prompt": prompt})
    seen = Seen(before, llm.stats())
    log = served.log
    if response.status_code == 403:
        raise Incorrect(
            "A real server answered 403 Forbidden to a JSON POST: CSRF middleware refused "
            "it (Django's test client skips that check, so tests would not show it). This "
            "API is called by programs, not by a logged-in browser: mark the view "
            "`@csrf_exempt`.",
            evidence=numbered(log),
        )
    if response.status_code != 200:
        cause = cause_in(log)
        if "MultiValueDictKeyError" not in " ".join(log):
            form = await served.post(
                "/api/chat/",
                content=f"prompt={prompt.replace(' ', '+')}-form".encode(),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            if form.status_code == 200:
                cause = CAUSES[1][1]
        raise Incorrect(
            f'POST /api/chat/ with the JSON body {{"prompt": ...}} answered '
            f"{response.status_code}, expected 200. Most likely {cause}. What the server "
            "logged:",
            evidence=numbered(log) or response.text[:300],
        )
    reply = reply_of(response.text)
    if seen.calls == 0:
        raise Incorrect(
            f"The view answered 200 and the mock LLM received no call (requests_total "
            f"stayed at {seen.after['requests_total']}): the reply does not come from the "
            "LLM. Await `client.chat.completions.create(...)` and answer its text.",
            evidence=response.text[:300],
        )
    if not reply:
        raise Incorrect(
            'The answer has no "reply" text: return the JSON of `record.response()` '
            '(or `JsonResponse({"reply": ...})`).',
            evidence=response.text[:300],
        )
    (want,) = await mock_replies(llm, [prompt])
    rows = await rows_for(prompt)
    if reply != want:
        unread = (
            " No AICall row holds the prompt the check sent, so the LLM was asked something "
            "else: the JSON body is never read (`request.POST` is empty for a JSON body; "
            "use `read_prompt(request)`)."
            if not rows
            else ""
        )
        raise Incorrect(
            f"The mock saw {seen.calls} call(s), but the reply is not its answer to the prompt "
            "the check sent." + unread,
            evidence=f"prompt:   {prompt!r}\nexpected: {shorten(want)!r}\ngot:      "
            f"{shorten(reply)!r}",
        )
    if len(rows) != 1 or not rows[0].ok:
        raise Incorrect(
            f"One call answered, and {len(rows)} AICall rows hold its prompt "
            f"({sum(r.ok for r in rows)} marked ok), expected exactly one successful row: log "
            "it once with `await AICall.objects.acreate(**record.fields())`."
        )
    return reply


async def burst(served: Any, llm: Any, tag: str, n: int) -> tuple[str, int]:
    """`n` POSTs at once: every one answered with its own reply, side by side at the LLM."""
    prompts = [f"{tag} #{i}" for i in range(n)]
    llm.reset()
    before = llm.stats()
    sent = await served.burst(n, lambda i: {"json": {"prompt": prompts[i]}})
    seen = Seen(before, llm.stats())
    if sent.failed():
        raise Incorrect(
            f"{n} concurrent POSTs answered {sent.status_line()}, expected {n} × 200. Most "
            f"likely {cause_in(sent.log)}. What the server logged:",
            evidence=numbered(sent.log) or sent.bodies[sent.failed()[0]][:300],
        )
    measured = (
        f"{n} concurrent requests: the mock LLM saw {seen.calls} calls, at most {seen.peak} at once"
    )
    if seen.sync_sdk:
        where = (
            "inside `async def`, so each call blocked the event loop and the calls ran one "
            "after another"
            if seen.peak < MIN_PEAK
            else "in worker threads (`sync_to_async` or `asyncio.to_thread` around the old "
            "sync code): every call in flight holds a thread, which is what this step removes"
        )
        raise Incorrect(
            f"{measured}, {seen.sync_sdk} of them sent by the sync `openai.OpenAI` client "
            f"(header X-Stainless-Async: false), {where}. Use `openai.AsyncOpenAI` and "
            "`await` the call.",
            evidence=f"X-Stainless-Async values the mock counted: {seen.after.get('sdk_async')}",
        )
    if seen.peak < MIN_PEAK:
        raise Incorrect(
            f"{measured}: they ran one after another. Something in your view blocks the event "
            "loop while the LLM call waits (`time.sleep`, a sync library call).",
            evidence=f"X-Stainless-Async values the mock counted: {seen.after.get('sdk_async')}",
        )
    replies = [reply_of(body) for body in sent.bodies]
    wants = await mock_replies(llm, prompts)
    wrong = [i for i, (got, want) in enumerate(zip(replies, wants, strict=True)) if got != want]
    if wrong:
        i = wrong[0]
        raise Incorrect(
            f"{measured}, but {len(wrong)} of {n} answers are not the LLM's reply to their own "
            "prompt: requests must not share a reply (a module-level variable, a cached "
            "answer).",
            evidence=f"prompt:   {prompts[i]!r}\nexpected: {shorten(wants[i])!r}\n"
            f"got:      {shorten(replies[i])!r}",
        )
    calls = f"{seen.sdk(ASYNC_SDK)} through AsyncOpenAI"
    return f"{measured} ({calls})", seen.peak


async def bad_input(served: Any, llm: Any) -> str:
    """Each odd body: a 4xx, and no call to the LLM."""
    for what, body in BAD_BODIES:
        before = llm.stats()
        answer = await served.post("/api/chat/", content=body, headers=JSON)
        seen = Seen(before, llm.stats())
        shown = body.decode() or "(empty)"
        what = what[0].upper() + what[1:]
        if answer.status_code >= 500:
            raise Incorrect(
                f"{what} ({shown}) got {answer.status_code}, expected 400: a client's mistake "
                f"is not a server error. Most likely {cause_in(served.log, BAD_SHAPE)}; "
                "`read_prompt(request)` answers every bad body with an `ApiError`: return "
                "`error.response()`.",
                evidence=numbered(served.log) or answer.text[:300],
            )
        if not 400 <= answer.status_code < 500 or seen.calls:
            sent = f"; the mock LLM received {seen.calls} call(s) for it" if seen.calls else ""
            raise Incorrect(
                f"{what} ({shown}) got {answer.status_code}{sent}, expected a "
                "400 before any LLM call: validate the body (`read_prompt(request)`) and say "
                "what is wrong instead of sending it on.",
                evidence=answer.text[:300],
            )
    return f"{len(BAD_BODIES)} bad bodies each got a 4xx without an LLM call"


async def hang_up(served: Any, llm: Any, prompt: str) -> str:
    """The client leaves after HANG_UP_S while the LLM takes HANG_S: the call is cancelled."""
    import asyncio

    import httpx2

    with mock_settings(llm, latency_s=HANG_S):
        before = llm.stats()
        try:
            await served.http.post("/api/chat/", json={"prompt": prompt}, timeout=HANG_UP_S)
        except httpx2.TimeoutException:
            pass
        for _ in range(int((HANG_S + 2) / 0.1)):  # until the mock's call ended, one way or other
            if llm.stats()["in_flight"] == 0:
                break
            await asyncio.sleep(0.1)
        seen = Seen(before, llm.stats())
    if seen.calls and not seen.cancelled:
        raise Incorrect(
            f"A client that hung up after {HANG_UP_S:g} s left its LLM call running: the mock "
            f"LLM saw {seen.calls} call(s) and no cancellation, so the call went on for its "
            f"full {HANG_S:g} s with nobody to read the answer. Await the SDK call in the view "
            "itself, so Django's cancellation on disconnect reaches it (not in a thread or a "
            "background task).",
        )
    return f"a client hanging up cancelled its LLM call ({seen.cancelled} cancelled at the mock)"


async def llm_fault(served: Any, llm: Any, prompt: str) -> str:
    """The LLM answers 503 to every attempt: a 502-504 with an error, and a failed row."""
    before = llm.stats()
    with mock_settings(llm, fault="503"):
        answer = await served.post("/api/chat/", json={"prompt": prompt})
    seen = Seen(before, llm.stats())
    rows = await rows_for(prompt)
    failed = f"the mock LLM answered 503 to all {seen.calls} attempts"
    if answer.status_code == 200:
        raise Incorrect(
            f"When {failed}, your view answered 200 with {shorten(answer.text, 120)}: a "
            "failed call is not a reply. Catch `openai.OpenAIError`, log the failure, and "
            "return `failure_from(exc).response()` (a 503 here).",
        )
    if answer.status_code == 500:
        raise Incorrect(
            f"When {failed}, your view answered 500. Most likely {cause_in(served.log)}. "
            "Expected the mapped failure: `failure_from(exc).response()` (503 for an "
            "upstream 5xx), after logging the failed call.",
            evidence=numbered(served.log) or answer.text[:300],
        )
    try:
        error = json.loads(answer.text).get("error")
    except (ValueError, AttributeError):
        error = None
    if answer.status_code not in (502, 503, 504) or not error:
        raise Incorrect(
            f"When {failed}, your view answered {answer.status_code}, expected 502-504 with "
            'a JSON "error": `failure_from(exc).response()` says which.',
            evidence=answer.text[:300],
        )
    if not any(not row.ok for row in rows):
        raise Incorrect(
            f"When {failed}, your view answered {answer.status_code}, but no AICall row marks "
            f"that call failed ({len(rows)} rows hold its prompt): log the failure too, "
            "`await AICall.objects.acreate(**record.failed(failure).fields())`.",
        )
    return f"an LLM failing with 503 got {answer.status_code} and a logged failed call"


# How 02.1's wrong answers are written: the master's view with one part changed.
READ = """    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
"""
LOG = "await AICall.objects.acreate(**record.fields())"
FAILED = "await AICall.objects.acreate(**record.failed(failure).fields())"


def chat_view(
    read: str = READ,
    *,
    csrf: bool = True,
    client: str = "async",
    on_failure: str = f"{FAILED}\n            return failure.response()",
    log: str = LOG,
) -> str:
    """The master's chat view with one part changed: how wrong answers are written."""
    if client == "async":
        call = """    async with openai.AsyncOpenAI(**client_options()) as client:
        try:
            completion = await client.chat.completions.create(
                model=settings.LLM_MODEL, messages=messages_for(prompt)
            )
        except openai.OpenAIError as exc:
            failure = failure_from(exc)
            ON_FAILURE
"""
    elif client == "uncaught":
        call = """    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
"""
    else:
        call = """    with openai.OpenAI(**client_options()) as client:
        try:
            completion = client.chat.completions.create(
                model=settings.LLM_MODEL, messages=messages_for(prompt)
            )
        except openai.OpenAIError as exc:
            failure = failure_from(exc)
            ON_FAILURE
"""
    return (
        ("@csrf_exempt\n" if csrf else "")
        + "async def chat(request):\n"
        + read
        + '    record = CallRecord(endpoint="chat", prompt=prompt)\n'
        + call.replace("ON_FAILURE", on_failure)
        + f"    record.succeeded(completion)\n    {log}\n    return record.response()\n"
    )
