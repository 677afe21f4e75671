"""Step 02, async views: the chat view made async, and the async ORM in an async view.

Master: solutions/02_async_views.ipynb. In the notebook:

    from labkit.steps.step_02 import q1, q2
"""

from __future__ import annotations

import json
import secrets

from labkit.exercises import Exercise, Incorrect
from labkit.steps.chat_probe import FAILED
from labkit.steps.chat_probe import chat_view as _chat

# 02.1's burst: enough requests that a blocked loop is unmistakable at the LLM's counter.
BURST = 20
LATENCY_S = 0.5
RECENT = 5  # 02.2: how many calls the summary lists


class AsyncChat(Exercise):
    """POST /api/chat/ {"prompt": ...} answers the LLM's reply without holding a thread.

    A correct view, served by a real uvicorn and judged at the mock LLM and the database with
    prompts chosen at check time:
    - answers a JSON POST (no CSRF cookie) with 200 and exactly the LLM's reply to that prompt,
      and logs one successful AICall row holding the prompt;
    - serves 20 concurrent POSTs side by side (many calls in flight at the mock at once), each
      with its own reply, through `AsyncOpenAI` (the SDK's X-Stainless-Async header tells a
      sync client in a thread, which concurrency alone cannot under Django 6.1's ASGI);
    - refuses odd bodies (malformed JSON, no "prompt", a JSON array, a number as prompt, an
      empty body) with a 4xx and never sends them to the LLM;
    - when its client hangs up mid-call, lets Django cancel the LLM call (the mock counts it);
    - when the LLM fails (503 to every attempt), answers 502-504 with a JSON "error" and logs a
      failed AICall row, through the async ORM on that branch too.
    Extra latency is fine (the capstone's p95 budget judges it); so is
    `await sync_to_async(AICall.objects.create)(...)`.
    """

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
        "`async with openai.AsyncOpenAI(...) as client:`, catching `openai.OpenAIError` "
        "(log `record.failed(failure_from(exc))`, return the failure's response), then "
        "`record.succeeded(completion)`, await the log row, `return record.response()`.",
    ]
    wrong_answers = {
        "the sync OpenAI client inside async def": _chat(client="sync"),
        "the whole old sync body in sync_to_async": """
@csrf_exempt
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()

    def work():
        record = CallRecord(endpoint="chat", prompt=prompt)
        with openai.OpenAI(**client_options()) as client:
            try:
                completion = client.chat.completions.create(
                    model=settings.LLM_MODEL, messages=messages_for(prompt)
                )
            except openai.OpenAIError as exc:
                failure = failure_from(exc)
                AICall.objects.create(**record.failed(failure).fields())
                return failure.response()
        record.succeeded(completion)
        AICall.objects.create(**record.fields())
        return record.response()

    return await sync_to_async(work)()
""",
        "shields the LLM call from a hang-up": """
@csrf_exempt
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    client = openai.AsyncOpenAI(**client_options())
    try:
        completion = await asyncio.shield(
            client.chat.completions.create(model=settings.LLM_MODEL, messages=messages_for(prompt))
        )
    except openai.OpenAIError as exc:
        failure = failure_from(exc)
        await AICall.objects.acreate(**record.failed(failure).fields())
        return failure.response()
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response()
""",
        "reads request.POST": _chat('    prompt = request.POST["prompt"]\n'),
        "reads request.POST with a default": _chat('    prompt = request.POST.get("prompt", "")\n'),
        "no csrf_exempt": _chat(csrf=False),
        "the sync ORM logs the call": _chat(log="AICall.objects.create(**record.fields())"),
        "the sync ORM only in the failure branch": _chat(
            on_failure="AICall.objects.create(**record.failed(failure).fields())\n"
            "            return failure.response()"
        ),
        "an LLM fault becomes a 500": _chat(client="uncaught"),
        "an LLM fault becomes 200 with an empty reply": _chat(
            on_failure=f'{FAILED}\n            return JsonResponse({{"reply": ""}})'
        ),
        "only malformed JSON and a missing prompt refused": _chat(
            """    try:
        prompt = json.loads(request.body)["prompt"]
    except (ValueError, KeyError):
        return JsonResponse({"error": "bad input"}, status=400)
"""
        ),
        "no 400 for malformed JSON": _chat('    prompt = json.loads(request.body)["prompt"]\n'),
        "never calls the LLM": """
@csrf_exempt
async def chat(request):
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    await AICall.objects.acreate(endpoint="chat", prompt=prompt, model=settings.LLM_MODEL)
    return JsonResponse({"reply": f"You asked: {prompt}"})
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, chat) -> str:
        from labkit.steps import chat_probe
        from labkit.steps.probes import ServedView, lab_mock, mock_settings
        from labkit.steps.subject import is_async

        if not is_async(chat):
            raise Incorrect(
                "`chat` is a plain `def` view, so under ASGI Django runs it in a thread and "
                "the LLM call still holds that thread. Declare it `async def` and await "
                "`openai.AsyncOpenAI`."
            )
        llm = lab_mock()
        tag = f"check 02.1 {secrets.token_hex(4)}"
        with mock_settings(llm, latency_s=LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
            async with ServedView(chat, route="chat") as served:
                await chat_probe.first_call(served, llm, f"{tag} first")
                side_by_side, _ = await chat_probe.burst(served, llm, tag, BURST)
                refused = await chat_probe.bad_input(served, llm)
                hung_up = await chat_probe.hang_up(served, llm, f"{tag} hang-up")
                fault = await chat_probe.llm_fault(served, llm, f"{tag} fault")
        return (
            f"{side_by_side}, each answered with its own reply. Through a real server it was "
            f"not blocked by CSRF, {refused}, {hung_up}, and {fault}."
        )


class RecentCalls(Exercise):
    """GET answers {"total": all AICall rows, "recent": the newest five, newest first}.

    A correct view, served by a real uvicorn, judged on rows the check inserts just before:
    - is `async def` with async queries (a sync one raises SynchronousOnlyOperation: a 500);
    - awaits what it wraps (`sync_to_async(fn)()` unawaited is a coroutine JSON cannot hold);
    - answers from the database on every request: asked again after two more rows were
      logged, it lists them and counts them (no remembered answer), in at most 2 queries.
    """

    id = "02.2"
    database_evidence = True
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
        "counts only the listed calls": """
async def recent_calls(request):
    calls = AICall.objects.order_by("-created", "-id")[:5]
    recent = [
        {"prompt": call.prompt[:60], "ok": call.ok, "latency_ms": round(call.latency_ms)}
        async for call in calls
    ]
    return JsonResponse({"total": len(recent), "recent": recent})
""",
        "remembers the first answer": """
async def recent_calls(request):
    global _recent
    if "_recent" not in globals():
        calls = AICall.objects.order_by("-created", "-id")[:5]
        _recent = {
            "total": await AICall.objects.acount(),
            "recent": [
                {"prompt": c.prompt[:60], "ok": c.ok, "latency_ms": round(c.latency_ms)}
                async for c in calls
            ],
        }
    return JsonResponse(_recent)
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, recent_calls) -> str:
        from labkit.steps.probes import ServedView
        from labkit.steps.subject import is_async
        from labproject.ai.models import AICall

        if not is_async(recent_calls):
            raise Incorrect(
                "`recent_calls` is a plain `def`: keep it `async def` and make its queries "
                "async (`acount()`, `async for`)."
            )
        tag = f"check 02.2 {secrets.token_hex(4)}"
        try:
            await self._log_calls(tag, range(RECENT + 1))
            async with ServedView(recent_calls, route="chat") as served:
                data, queries = await self._get(served)
                self._judge(data, await AICall.objects.acount(), tag, RECENT + 1, "")
                await self._log_calls(tag, range(RECENT + 1, RECENT + 3))
                again, _ = await self._get(served)
                total = await AICall.objects.acount()
                self._judge(
                    again,
                    total,
                    tag,
                    RECENT + 3,
                    " Asked again after the check logged 2 more calls, the view must answer "
                    "from the database again, not from a remembered answer.",
                )
        finally:
            await AICall.objects.filter(prompt__startswith=tag).adelete()
        return (
            f'"total" is {total}, and "recent" lists the newest {RECENT} calls, newest first, '
            f"also after 2 more were logged; {queries}, all through the async ORM."
        )

    @staticmethod
    async def _log_calls(tag: str, numbers: range) -> None:
        from labproject.ai.models import AICall

        for i in numbers:
            await AICall.objects.acreate(
                endpoint="check", prompt=f"{tag} #{i}", model="mock-gpt", latency_ms=100.0 + i
            )

    @staticmethod
    async def _get(served) -> tuple[dict, str]:
        from labkit.exercises import expect_queries
        from labkit.steps.chat_probe import cause_in
        from labkit.steps.dbside import queries_seen
        from labkit.steps.probes import numbered

        async with queries_seen("GET recent_calls") as log:
            response = await served.request("GET", "/api/chat/")
        if response.status_code != 200:
            text = " ".join(served.log)
            if "SynchronousOnlyOperation" in text:
                cause = (
                    "a query ran synchronously inside `async def` (`.count()`, "
                    "`list(queryset)` or a plain `for` over a queryset). Use `await "
                    "...acount()` and `async for`, or `await sync_to_async(fn)()`"
                )
            elif "coroutine" in text:
                cause = (
                    "a coroutine was put where a value belongs: `sync_to_async(fn)()` "
                    "returns a coroutine until you `await` it"
                )
            else:
                cause = cause_in(served.log)
            raise Incorrect(
                f"GET answered {response.status_code}, expected a 200 JsonResponse. Most "
                f"likely {cause}. What the server logged:",
                evidence=numbered(served.log) or response.text[:300],
            )
        try:
            data = json.loads(response.text)
        except ValueError:
            raise Incorrect(
                "The answer is not JSON: return a `JsonResponse`.",
                evidence=response.text[:300],
            ) from None
        return data, expect_queries(log, at_most=2)

    @staticmethod
    def _judge(data: dict, total: int, tag: str, logged: int, again: str) -> None:
        if not isinstance(data, dict) or "total" not in data or "recent" not in data:
            raise Incorrect(
                'Expected a JSON object with "total" and "recent".', evidence=str(data)[:300]
            )
        if data["total"] != total:
            raise Incorrect(
                f'"total" is {data["total"]!r}, but the table holds {total} calls: count them '
                f"all with `await AICall.objects.acount()`.{again}"
            )
        recent = data["recent"]
        if not isinstance(recent, list) or len(recent) != RECENT:
            shown = len(recent) if isinstance(recent, list) else type(recent).__name__
            raise Incorrect(f'"recent" should list the newest {RECENT} calls; got {shown}.')
        prompts = [str(item.get("prompt", "")) if isinstance(item, dict) else "" for item in recent]
        want = [f"{tag} #{i}" for i in range(logged - 1, logged - 1 - RECENT, -1)]
        if [p[: len(want[-1])] for p in prompts] != want:
            raise Incorrect(
                f"Just before asking your view the check logged {logged} calls; the newest "
                f'{RECENT} of them should fill "recent", newest first.{again} Your prompts, '
                "then the expected ones:",
                evidence="\n".join(f"{i}. {p[:60]}" for i, p in enumerate(prompts, start=1))
                + "\n---\n"
                + "\n".join(f"{i}. {p}" for i, p in enumerate(want, start=1)),
            )


q1 = AsyncChat()
q2 = RecentCalls()
