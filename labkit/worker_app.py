"""The app the lab serves from uvicorn worker processes: the recommended chat plus a reply cache.

A cell-defined view cannot reach another process, so step 06 serves this module's factory
when it compares one uvicorn worker with several:

    serve_uvicorn(asgi_app="labkit.worker_app:application", extra_args=["--factory"],
                  workers=2, env={"LAB_CACHE_URL": redis.url})

Each worker process builds its own app from the factory. The reply cache is Django's
`default` cache: LocMem (one per process, so workers cannot share hits) unless
`LAB_CACHE_URL` points every worker at the same Redis. Answers say which worker (pid) served
them and whether the cache did, so a notebook can count both from outside.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

# Cached replies live this long; the load runs of a lab last seconds.
CACHE_TTL_S = 3600
# Bumped if the reply format changes, so old entries in a long-lived Redis are never read.
KEY_VERSION = "v1"


def cache_key(model: str, messages: list[dict[str, str]]) -> str:
    """The cache key of one completion: the model and the whole conversation, hashed.

    Everything that changes the answer is in the key (a key of the prompt alone would hand one
    model's reply to another).

    >>> cache_key("mock-gpt", [{"role": "user", "content": "hi"}])[:14]
    'lab:chat:v1:0e'
    """
    material = json.dumps({"model": model, "messages": messages}, sort_keys=True)
    return f"lab:chat:{KEY_VERSION}:{hashlib.sha256(material.encode()).hexdigest()}"


def cached_chat_view() -> Any:
    """Build the chat view: answer from the shared cache, else ask the LLM and cache the reply."""
    from django.conf import settings
    from django.core.cache import caches
    from django.http import HttpRequest, JsonResponse
    from django.views.decorators.csrf import csrf_exempt

    from labkit.reference import async_client, log_call
    from labproject.ai.api import ApiError, read_prompt
    from labproject.ai.llm import CallRecord, failure_from, messages_for

    worker = os.getpid()

    @csrf_exempt
    async def chat(request: HttpRequest) -> JsonResponse:
        try:
            prompt = read_prompt(request)
        except ApiError as error:
            return error.response()
        messages = messages_for(prompt)
        key = cache_key(settings.LLM_MODEL, messages)
        cache = caches["default"]
        reply = await cache.aget(key)
        if reply is not None:
            return JsonResponse({"reply": reply, "cached": True, "worker": worker})
        record = CallRecord(endpoint="chat", prompt=prompt)
        try:
            completion = await async_client().chat.completions.create(
                model=settings.LLM_MODEL, messages=messages
            )
        except Exception as exc:  # every LLM fault becomes a logged failure and a mapped status
            await log_call(record.failed(failure := failure_from(exc)))
            return failure.response()
        record.succeeded(completion)
        await cache.aset(key, record.reply, timeout=CACHE_TTL_S)
        await log_call(record)
        return record.response(cached=False, worker=worker)

    return chat


def application() -> Any:
    """ASGI factory (`uvicorn --factory`): the project, its chat route served by the cached view."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labproject.settings")
    import django

    django.setup()
    from labkit.reference import asgi_application
    from labproject import routes

    routes.use("chat", cached_chat_view())
    return asgi_application()
