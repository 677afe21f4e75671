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

import os
from typing import Any


def cached_chat_view() -> Any:
    """The course's cached chat view (`labkit.reference`), its answers naming their worker."""
    from django.http import HttpRequest, JsonResponse
    from django.views.decorators.csrf import csrf_exempt

    from labkit.reference import LLMFailed, cached_answer
    from labproject.ai.api import ApiError, read_prompt

    worker = os.getpid()

    @csrf_exempt
    async def chat(request: HttpRequest) -> JsonResponse:
        try:
            prompt = read_prompt(request)
        except ApiError as error:
            return error.response()
        try:
            answer, cached = await cached_answer(prompt)
        except LLMFailed as failed:
            return failed.failure.response()
        return JsonResponse({**answer, "cached": cached, "worker": worker})

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
