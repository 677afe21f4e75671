"""The course's recommended async views: what the notebooks build step by step, in one place.

The benchmark serves these as "after", and checks compare learners' answers against their
behaviour. Learners never need to read this module: the notebooks teach each piece, and
`solutions/` holds the versions written in the course's own cells.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref
from typing import Any

import httpx2
import openai
from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest, JsonResponse
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.views.decorators.csrf import csrf_exempt

from labkit.singleflight import SingleFlight
from labproject.ai.api import ApiError, read_prompt, require_method
from labproject.ai.llm import (
    CallRecord,
    LLMFailure,
    chat_options,
    client_options,
    failure_from,
    messages_for,
    raise_if_failed,
    responses_options,
)
from labproject.ai.models import AICall, Document
from labproject.ai.views import SUMMARY_INSTRUCTION

# Connections kept per event loop: enough for a worker's concurrent calls, and below the
# provider's concurrency limits. One client per loop, since an httpx2 pool is bound to the
# loop that created it ("bound to a different event loop" otherwise).
POOL_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=100)
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, tuple[dict[str, Any], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()
_retired: set[asyncio.Task[None]] = set()


def async_client() -> openai.AsyncOpenAI:
    """Return this event loop's pooled AsyncOpenAI client, creating it on first use.

    The client is rebuilt when the settings it was made from change (base URL, key, timeout,
    retries), so switching to a real provider or a shorter timeout takes effect at once.
    """
    loop = asyncio.get_running_loop()
    options = client_options()
    held = _clients.get(loop)
    if held is not None and held[0] == options:
        return held[1]
    http_client = openai.DefaultAsyncHttpxClient(limits=POOL_LIMITS)
    client = openai.AsyncOpenAI(**options, http_client=http_client)
    _clients[loop] = (options, client)
    if held is not None:
        # Close the old pool's sockets once its in-flight calls are done with it.
        task = loop.create_task(held[1].close())
        _retired.add(task)
        task.add_done_callback(_retired.discard)
    return client


_sync_client: openai.OpenAI | None = None


def sync_client() -> openai.OpenAI:
    """Return the process's shared sync client (httpx2's sync pool is thread-safe)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = openai.OpenAI(**client_options())
    return _sync_client


@csrf_exempt
def sync_chat(request: HttpRequest) -> JsonResponse:
    """The sync chat view with a shared client: each call still holds a worker thread."""
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    try:
        completion = sync_client().chat.completions.create(
            **chat_options(), messages=messages_for(prompt)
        )
    except Exception as exc:  # every LLM fault becomes a logged failure and a mapped status
        failure = failure_from(exc)
        AICall.objects.create(**record.failed(failure).fields())
        return failure.response()
    record.succeeded(completion)
    AICall.objects.create(**record.fields())
    return record.response()


@csrf_exempt
async def chat(request: HttpRequest) -> JsonResponse:
    """The async chat view: awaits the LLM through the loop's pooled client."""
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    try:
        await complete(record, messages_for(prompt))
    except LLMFailed as failed:
        return failed.failure.response()
    return record.response()


@csrf_exempt
async def document_summary(request: HttpRequest, doc_id: int) -> JsonResponse:
    """Summarise document `doc_id` from its chunks, read in one query."""
    try:
        require_method(request, "GET")
        lines = await summary_lines(doc_id)
    except ApiError as error:
        return error.response()
    prompt = f"{SUMMARY_INSTRUCTION}\n\n" + "\n".join(lines)
    record = CallRecord(endpoint="summary", prompt=prompt)
    try:
        await complete(record, messages_for(prompt))
    except LLMFailed as failed:
        return failed.failure.response()
    return record.response(document=doc_id)


async def summary_lines(doc_id: int) -> list[str]:
    """The document's cited chunk lines: one query (a join), or ApiError 404."""
    rows = Document.objects.filter(pk=doc_id).values_list(
        "title", "chunks__position", "chunks__text"
    )
    found = [row async for row in rows.order_by("chunks__position")]
    if not found:
        raise ApiError(404, "document_not_found", f"there is no document {doc_id}.")
    return [f"[{title} §{pos}] {text}" for title, pos, text in found if pos is not None]


class LLMFailed(Exception):
    """The LLM call failed; the failure is logged already and says what to answer."""

    def __init__(self, failure: LLMFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


async def complete(
    record: CallRecord, messages: list[dict[str, str]], *, api: str = "chat", **params: Any
) -> CallRecord:
    """Call the LLM, log the call either way, and fill `record`; raise LLMFailed on a fault.

    `api="responses"` asks through the Responses API (`client.responses.create`), sending the
    same messages as its `input`; the record, the log row and the fault mapping are the same.
    """
    client = async_client()
    try:
        if api == "responses":
            completion = raise_if_failed(
                await client.responses.create(input=messages, **{**responses_options(), **params})
            )
        else:
            completion = await client.chat.completions.create(
                messages=messages, **{**chat_options(), **params}
            )
    except Exception as exc:  # every LLM fault becomes a logged failure and a mapped status
        failure = failure_from(exc)
        await log_call(record.failed(failure))
        raise LLMFailed(failure) from exc
    record.succeeded(completion)
    await log_call(record)
    return record


# What the cached view sends besides the prompt. All of it goes into the cache key: the same
# prompt with another model, system prompt or temperature is another answer.
CHAT_SYSTEM: str | None = None
CHAT_PARAMS: dict[str, Any] = {"temperature": 0}
# Bump to drop every cached answer at once (a new prompt template, a changed reply shape).
CACHE_VERSION = 1
CACHE_TTL_S = 600
CACHE_ALIAS = "default"
flights = SingleFlight()


def chat_cache_key(
    prompt: str, *, model: str, system: str | None = None, params: dict[str, Any] | None = None
) -> str:
    """A cache key for one answer: version, model, params, system prompt and prompt, hashed.

    Hashed because prompts are long and may hold characters memcached keys refuse.
    """
    material = json.dumps(
        [CACHE_VERSION, model, params or {}, system or "", prompt],
        sort_keys=True,
        ensure_ascii=False,
    )
    return f"chat:v{CACHE_VERSION}:{hashlib.sha256(material.encode()).hexdigest()}"


@csrf_exempt
async def cached_chat(request: HttpRequest) -> JsonResponse:
    """The chat view with a response cache; identical concurrent misses make one LLM call."""
    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    try:
        answer, cached = await cached_answer(prompt)
    except LLMFailed as failed:
        return failed.failure.response()
    return JsonResponse({**answer, "cached": cached})


async def cached_answer(prompt: str) -> tuple[dict[str, Any], bool]:
    """The answer to `prompt` and whether the cache had it; LLMFailed if the LLM failed."""
    model = settings.LLM_MODEL
    key = chat_cache_key(prompt, model=model, system=CHAT_SYSTEM, params=CHAT_PARAMS)
    answer = await caches[CACHE_ALIAS].aget(key)
    if answer is not None:
        return answer, True
    return await flights.do(key, lambda: _answer_and_store(prompt, key)), False


async def _answer_and_store(prompt: str, key: str) -> dict[str, Any]:
    record = CallRecord(endpoint="chat", prompt=prompt)
    await complete(record, messages_for(prompt, CHAT_SYSTEM), **CHAT_PARAMS)
    usage = {"prompt_tokens": record.prompt_tokens, "completion_tokens": record.completion_tokens}
    answer = {"reply": record.reply, "model": record.model, "usage": usage}
    # Only successes are cached: a fault must not be served again for CACHE_TTL_S.
    await caches[CACHE_ALIAS].aset(key, answer, CACHE_TTL_S)
    return answer


_sqlite_writes = weakref.WeakKeyDictionary()


async def log_call(record: CallRecord) -> None:
    """Save the call's log row; on SQLite, one write at a time per event loop.

    SQLite takes one writer at a time and makes the others sleep in growing steps on its busy
    timeout; queueing the writes in the loop instead measured 40.6 -> 43.8 req/s at 50 users
    (1 s LLM latency, 2 CPUs). PostgreSQL needs no such queue.
    """
    from django.db import connection

    if connection.vendor != "sqlite":
        await AICall.objects.acreate(**record.fields())
        return
    loop = asyncio.get_running_loop()
    lock = _sqlite_writes.setdefault(loop, asyncio.Lock())
    async with lock:
        await AICall.objects.acreate(**record.fields())


def _inline(middleware: type) -> type:
    """An async-native version of a `MiddlewareMixin` middleware whose hooks do no I/O.

    Django runs each hook of a sync-capable middleware through `sync_to_async` on an async
    request: a thread hop per hook, per request. These three middlewares only read headers and
    cookies, so their hooks can run inline on the event loop.
    """

    class Inline(middleware):
        async def __acall__(self, request):
            response = None
            if hasattr(self, "process_request"):
                response = self.process_request(request)
            response = response or await self.get_response(request)
            if hasattr(self, "process_response"):
                response = self.process_response(request, response)
            return response

        if hasattr(middleware, "process_view"):

            async def process_view(self, request, view, args, kwargs):
                return middleware.process_view(self, request, view, args, kwargs)

    Inline.__name__ = Inline.__qualname__ = f"Inline{middleware.__name__}"
    Inline.__module__ = __name__
    return Inline


InlineSecurityMiddleware = _inline(SecurityMiddleware)
InlineCommonMiddleware = _inline(CommonMiddleware)
InlineCsrfViewMiddleware = _inline(CsrfViewMiddleware)

# The project's middleware with every hook run on the event loop (same checks, no hops).
MIDDLEWARE = [
    "labkit.reference.InlineSecurityMiddleware",
    "labkit.reference.InlineCommonMiddleware",
    "labkit.reference.InlineCsrfViewMiddleware",
]


def asgi_application():
    """An ASGI handler for the project with `MIDDLEWARE` above: the recommended setup."""
    from django.core.handlers.asgi import ASGIHandler
    from django.test import override_settings

    with override_settings(MIDDLEWARE=MIDDLEWARE):
        return ASGIHandler()
