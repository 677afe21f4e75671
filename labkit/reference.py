"""The course's recommended async views: what the notebooks build step by step, in one place.

The benchmark serves these as "after", and checks compare learners' answers against their
behaviour. Learners never need to read this module: the notebooks teach each piece, and
`solutions/` holds the versions written in the course's own cells.
"""

from __future__ import annotations

import asyncio
import weakref

import httpx2
import openai
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.middleware.common import CommonMiddleware
from django.middleware.csrf import CsrfViewMiddleware
from django.middleware.security import SecurityMiddleware
from django.views.decorators.csrf import csrf_exempt

from labproject.ai.api import ApiError, read_prompt
from labproject.ai.llm import CallRecord, client_options, failure_from, messages_for
from labproject.ai.models import AICall

# Connections kept per event loop: enough for a worker's concurrent calls, and below the
# provider's concurrency limits. One client per loop, since an httpx2 pool is bound to the
# loop that created it ("bound to a different event loop" otherwise).
POOL_LIMITS = httpx2.Limits(max_connections=100, max_keepalive_connections=100)
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
    weakref.WeakKeyDictionary()
)


def async_client() -> openai.AsyncOpenAI:
    """Return this event loop's pooled AsyncOpenAI client, creating it on first use."""
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        http_client = openai.DefaultAsyncHttpxClient(limits=POOL_LIMITS)
        client = openai.AsyncOpenAI(**client_options(), http_client=http_client)
        _clients[loop] = client
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
            model=settings.LLM_MODEL, messages=messages_for(prompt)
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
        completion = await async_client().chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    except Exception as exc:  # every LLM fault becomes a logged failure and a mapped status
        await log_call(record.failed(failure := failure_from(exc)))
        return failure.response()
    record.succeeded(completion)
    await log_call(record)
    return record.response()


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
