"""The ASGI apps the bench serves beside the project's own.

- `reference_application`: the course's recommended setup (inline middleware, the async chat
  view) as a uvicorn `--factory`, so worker processes serve it, not the starter's sync view.
- `starlette_application`: the same upstream call with the same pooled client, on Starlette,
  to price Django's share of the CPU per request.
- `chat_without_log`: the recommended view minus its AICall row, to separate the cost of the
  framework from the cost of the database write.
"""

from __future__ import annotations

import os
from typing import Any

from django.views.decorators.csrf import csrf_exempt


def reference_application() -> Any:
    """uvicorn factory: the project, the recommended chat view behind /api/chat/."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labproject.settings")
    import django

    django.setup()
    from labkit import reference
    from labproject import routes

    routes.use("chat", reference.chat)
    return reference.asgi_application()


@csrf_exempt
async def chat_without_log(request: Any) -> Any:
    """The recommended async chat view, without saving the call's log row."""

    from labkit.reference import async_client
    from labproject.ai.api import ApiError, read_prompt
    from labproject.ai.llm import CallRecord, chat_options, failure_from, messages_for

    try:
        prompt = read_prompt(request)
    except ApiError as error:
        return error.response()
    record = CallRecord(endpoint="chat", prompt=prompt)
    try:
        completion = await async_client().chat.completions.create(
            **chat_options(), messages=messages_for(prompt)
        )
    except Exception as exc:  # same mapping as the course's view, so errors look alike
        return failure_from(exc).response()
    return record.succeeded(completion).response()


def starlette_application() -> Any:
    """A minimal Starlette app answering POST /api/chat/ like the project's chat view."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from labkit.reference import async_client
    from labproject.ai.llm import chat_options, messages_for

    async def chat(request: Request) -> JSONResponse:
        try:
            prompt = (await request.json())["prompt"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": 'send {"prompt": ...}'}, status_code=400)
        try:
            completion = await async_client().chat.completions.create(
                **chat_options(), messages=messages_for(prompt)
            )
        except Exception as exc:  # an LLM fault is the upstream's, as in the Django view
            return JSONResponse({"error": type(exc).__name__}, status_code=502)
        usage = completion.usage
        return JSONResponse({
            "reply": completion.choices[0].message.content or "",
            "model": completion.model,
            "usage": {
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "completion_tokens": usage.completion_tokens if usage else 0,
            },
        })  # fmt: skip

    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/api/chat/", chat, methods=["POST"]), Route("/healthz", healthz)]
    )
