"""Step 02, async views: the chat view made async, and the async ORM in an async view.

Master: solutions/02_async_views.ipynb. In the notebook:

    from labkit.steps.step_02 import q1, q2
"""

from __future__ import annotations

import inspect
import json
import secrets
import time

from labkit.exercises import Exercise, Incorrect

# 02.1's burst: enough requests that a blocked loop is unmistakable, short enough to wait for.
BURST = 20
LATENCY_S = 0.3
RECENT = 5  # 02.2: how many calls the summary lists


def _reply_of(body: str) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    reply = data.get("reply") if isinstance(data, dict) else None
    return reply if isinstance(reply, str) and reply else None


class AsyncChat(Exercise):
    id = "02.1"
    title = "An async chat view"
    hints = [
        "Four things change: `async def`; read the prompt from `request.body` (try "
        "`read_prompt(request)`, which answers bad input with an `ApiError`); `@csrf_exempt`; "
        "and every blocking call becomes an awaited one.",
        "Use `openai.AsyncOpenAI(**client_options())` and `await client.chat.completions."
        "create(...)`; log with `await AICall.objects.acreate(**record.fields())`.",
        "Shape: `try: prompt = read_prompt(request)` / `except ApiError as error: return "
        "error.response()`, then build a `CallRecord`, await the completion inside "
        "`async with openai.AsyncOpenAI(...) as client:`, `record.succeeded(completion)`, "
        "await the log row, `return record.response()`.",
    ]
    wrong_answers = {
        "the sync OpenAI client inside async def": """
@csrf_exempt
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    with openai.OpenAI(**client_options()) as client:
        completion = client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "reads request.POST": """
@csrf_exempt
async def chat(request):
    prompt = request.POST["prompt"]
    record = CallRecord(endpoint="chat", prompt=prompt)
    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "no csrf_exempt": """
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "the sync ORM logs the call": """
@csrf_exempt
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    record.succeeded(completion)
    AICall.objects.create(**record.fields())
    return record.response()
""",
        "no 400 for malformed JSON": """
@csrf_exempt
async def chat(request):
    prompt = json.loads(request.body)["prompt"]
    record = CallRecord(endpoint="chat", prompt=prompt)
    async with openai.AsyncOpenAI(**client_options()) as client:
        completion = await client.chat.completions.create(
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

    async def evaluate(self, chat) -> str:
        from labkit.steps.probes import (
            ServedView,
            expect_side_by_side,
            lab_mock,
            mock_settings,
            numbered,
        )
        from labproject.ai.models import AICall

        if not inspect.iscoroutinefunction(chat):
            raise Incorrect(
                "`chat` is a plain `def` view, so under ASGI Django runs it in a thread and "
                "the LLM call still holds that thread. Declare it `async def` and await "
                "`openai.AsyncOpenAI`."
            )
        llm = lab_mock()
        tag = f"check 02.1 {secrets.token_hex(4)}"
        with mock_settings(llm, latency_s=LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
            async with ServedView(chat, route="chat") as served:
                started = time.perf_counter()
                first = await served.post("/api/chat/", json={"prompt": f"{tag} first"})
                single_s = time.perf_counter() - started
                self._judge_first(first, served.log, numbered)
                await self._judge_bad_input(served, numbered)
                llm.reset()
                burst = await served.burst(BURST, lambda i: {"json": {"prompt": f"{tag} #{i}"}})
                llm_peak = llm.stats()["in_flight_peak"]
        if burst.failed():
            raise Incorrect(
                f"{BURST} concurrent POSTs answered {burst.status_line()}, expected "
                f"{BURST} × 200. What the server logged:",
                evidence=numbered(burst.log) or burst.bodies[burst.failed()[0]][:300],
            )
        side_by_side = expect_side_by_side(burst, single_s, llm_peak=llm_peak)
        logged = await AICall.objects.filter(prompt__startswith=tag).acount()
        if logged < BURST + 1:
            raise Incorrect(
                f"{BURST + 1} calls answered, but only {logged} AICall rows were logged for "
                "them: save one row per call with `await AICall.objects.acreate(...)`."
            )
        return (
            f"{side_by_side} Through a real server it answered JSON with a reply, was not "
            f"blocked by CSRF, refused malformed JSON with 400, and logged {logged} AICall rows."
        )

    @staticmethod
    def _judge_first(response, log: list[str], numbered) -> None:
        if response.status_code == 403:
            raise Incorrect(
                "A real server answered 403 Forbidden to a JSON POST: CSRF middleware refused "
                "it (Django's test client skips that check, so tests would not show it). This "
                "API is called by programs, not by a logged-in browser: mark the view "
                "`@csrf_exempt`.",
                evidence=numbered(log),
            )
        if response.status_code != 200:
            raise Incorrect(
                f'POST /api/chat/ with the JSON body {{"prompt": ...}} answered '
                f"{response.status_code}, expected 200. What the server logged:",
                evidence=numbered(log) or response.text[:300],
            )
        if _reply_of(response.text) is None:
            raise Incorrect(
                'The answer has no "reply" text: return the JSON of `record.response()` '
                '(or `JsonResponse({"reply": ...})`).',
                evidence=response.text[:300],
            )

    @staticmethod
    async def _judge_bad_input(served, numbered) -> None:
        headers = {"content-type": "application/json"}
        bad = await served.post("/api/chat/", content=b'{"prompt": "unfinished', headers=headers)
        if bad.status_code != 400:
            raise Incorrect(
                f"Malformed JSON got {bad.status_code}, expected 400: a client mistake is not "
                "a server error. `read_prompt(request)` raises an `ApiError` that answers it; "
                "return `error.response()`.",
                evidence=numbered(served.log) or bad.text[:300],
            )
        missing = await served.post("/api/chat/", json={"question": "no prompt field"})
        if not 400 <= missing.status_code < 500:
            raise Incorrect(
                f'A JSON body without "prompt" got {missing.status_code}, expected a 4xx '
                "(400): say what is missing instead of failing.",
                evidence=numbered(served.log) or missing.text[:300],
            )


class RecentCalls(Exercise):
    id = "02.2"
    title = "Recent calls with the async ORM"
    hints = [
        "In `async def`, any query that runs right now raises SynchronousOnlyOperation: "
        "`.count()`, `list(queryset)` and a plain `for` over a queryset all do.",
        "Async forms: `await AICall.objects.acount()`, and `[... async for call in "
        "queryset]`; slicing a queryset (`[:5]`) does not run it, so it stays as it is.",
        "Or wrap a sync function: `await sync_to_async(fn)()` — without `await` you get a "
        "coroutine object, not the value.",
    ]
    wrong_answers = {
        "list(queryset) in async code": """
async def recent_calls(request):
    calls = list(AICall.objects.order_by("-created", "-id")[:5])
    recent = [
        {"prompt": call.prompt[:60], "ok": call.ok, "latency_ms": round(call.latency_ms)}
        for call in calls
    ]
    return JsonResponse({"total": await AICall.objects.acount(), "recent": recent})
""",
        "sync count()": """
async def recent_calls(request):
    calls = AICall.objects.order_by("-created", "-id")[:5]
    recent = [
        {"prompt": call.prompt[:60], "ok": call.ok, "latency_ms": round(call.latency_ms)}
        async for call in calls
    ]
    return JsonResponse({"total": AICall.objects.count(), "recent": recent})
""",
        "sync_to_async without await": """
async def recent_calls(request):
    calls = AICall.objects.order_by("-created", "-id")[:5]
    recent = [
        {"prompt": call.prompt[:60], "ok": call.ok, "latency_ms": round(call.latency_ms)}
        async for call in calls
    ]
    total = sync_to_async(AICall.objects.count)()
    return JsonResponse({"total": total, "recent": recent})
""",
        "oldest calls instead of the newest": """
async def recent_calls(request):
    calls = AICall.objects.order_by("created", "id")[:5]
    recent = [
        {"prompt": call.prompt[:60], "ok": call.ok, "latency_ms": round(call.latency_ms)}
        async for call in calls
    ]
    return JsonResponse({"total": await AICall.objects.acount(), "recent": recent})
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, recent_calls) -> str:
        from labproject.ai.models import AICall

        if not inspect.iscoroutinefunction(recent_calls):
            raise Incorrect(
                "`recent_calls` is a plain `def`: keep it `async def` and make its queries "
                "async (`acount()`, `async for`)."
            )
        tag = f"check 02.2 {secrets.token_hex(4)}"
        for i in range(RECENT + 1):
            await AICall.objects.acreate(
                endpoint="check", prompt=f"{tag} #{i}", model="mock-gpt", latency_ms=100.0 + i
            )
        try:
            data = await self._call(recent_calls)
            total = await AICall.objects.acount()
        finally:
            await AICall.objects.filter(prompt__startswith=tag).adelete()
        return self._judge(data, total, tag)

    @staticmethod
    async def _call(recent_calls) -> dict:
        from django.core.exceptions import SynchronousOnlyOperation
        from django.test import RequestFactory

        request = RequestFactory().get("/api/recent/")
        try:
            response = await recent_calls(request)
        except SynchronousOnlyOperation as error:
            raise Incorrect(
                "Your view raised SynchronousOnlyOperation: a query ran synchronously inside "
                "`async def` (`.count()`, `list(queryset)` or a plain `for` over a queryset). "
                "Use `await ...acount()` and `async for`, or `await sync_to_async(fn)()`.",
                evidence=f"{type(error).__name__}: {error}",
            ) from None
        except TypeError as error:
            if "coroutine" not in str(error):
                raise
            raise Incorrect(
                "Your view put a coroutine where a value belongs: `sync_to_async(fn)()` "
                "returns a coroutine until you `await` it.",
                evidence=f"{type(error).__name__}: {error}",
            ) from None
        if inspect.iscoroutine(response):
            response.close()
            raise Incorrect("`recent_calls` returned a coroutine: `await` what it returns.")
        status = getattr(response, "status_code", None)
        if status != 200:
            raise Incorrect(f"`recent_calls` answered {status!r}, expected a 200 JsonResponse.")
        try:
            return json.loads(response.content)
        except ValueError:
            raise Incorrect(
                "The answer is not JSON: return a `JsonResponse`.",
                evidence=response.content[:300].decode(errors="replace"),
            ) from None

    @staticmethod
    def _judge(data: dict, total: int, tag: str) -> str:
        if not isinstance(data, dict) or "total" not in data or "recent" not in data:
            raise Incorrect(
                'Expected a JSON object with "total" and "recent".', evidence=str(data)[:300]
            )
        if data["total"] != total:
            raise Incorrect(f'"total" is {data["total"]!r}, but the table holds {total} calls.')
        recent = data["recent"]
        if not isinstance(recent, list) or len(recent) != RECENT:
            shown = len(recent) if isinstance(recent, list) else type(recent).__name__
            raise Incorrect(f'"recent" should list the newest {RECENT} calls; got {shown}.')
        prompts = [str(item.get("prompt", "")) if isinstance(item, dict) else "" for item in recent]
        want = [f"{tag} #{i}" for i in range(RECENT, 0, -1)]
        if [p[: len(want[0])] for p in prompts] != want:
            raise Incorrect(
                f"Just before calling your view the check logged {RECENT + 1} calls; the newest "
                f'{RECENT} of them should fill "recent", newest first. Your prompts, then the '
                "expected ones:",
                evidence="\n".join(f"{i}. {p[:60]}" for i, p in enumerate(prompts, start=1))
                + "\n---\n"
                + "\n".join(f"{i}. {p}" for i, p in enumerate(want, start=1)),
            )
        return (
            f'"total" is {total}, and "recent" lists the newest {RECENT} calls, newest first, '
            "all through the async ORM."
        )


q1 = AsyncChat()
q2 = RecentCalls()
