"""Request parsing and JSON errors shared by the API views, sync and async alike."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse


class ApiError(Exception):
    """A client mistake, answered with a 4xx JSON body: {"error": {"code", "message"}}."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JsonResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JsonResponse:
    """Return the API's error shape with `status` and optional headers (Allow, Retry-After)."""
    response = JsonResponse({"error": {"code": code, "message": message}}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def require_method(request: HttpRequest, *allowed: str) -> None:
    """Raise a 405 ApiError unless the request uses one of `allowed`."""
    if request.method not in allowed:
        raise ApiError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here; use {' or '.join(allowed)}.",
            {"Allow": ", ".join(allowed)},
        )


def read_json(request: HttpRequest) -> dict:
    """Parse a JSON object body; `request.POST` is empty for JSON, so read the body itself."""
    if request.content_type != "application/json":
        shown = request.content_type or "none"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"send JSON with Content-Type: application/json (got {shown}).",
        )
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(413, "body_too_large", "the request body is too large.") from None
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except ValueError as exc:  # NaN or Infinity: Python's json accepts them, JSON does not
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        # The decoder recurses per nesting level: "[[[[…" 100k deep would otherwise be a 500.
        raise ApiError(400, "invalid_json", "the body's JSON is nested too deeply.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", f"expected a JSON object, got {type(data).__name__}.")
    return data


def read_prompt(request: HttpRequest) -> str:
    """Return the `prompt` field of a JSON POST body, validated, or raise ApiError."""
    require_method(request, "POST")
    data = read_json(request)
    if "prompt" not in data:
        raise ApiError(400, "missing_prompt", 'the JSON body needs a "prompt" field.')
    prompt = data["prompt"]
    if not isinstance(prompt, str):
        raise ApiError(
            400, "invalid_prompt", f'"prompt" must be a string, got {type(prompt).__name__}.'
        )
    if not prompt.strip():
        raise ApiError(400, "empty_prompt", '"prompt" is empty.')
    if "\x00" in prompt:
        # PostgreSQL text cannot hold NUL: it would fail at the log write, after the LLM call.
        raise ApiError(400, "invalid_prompt", '"prompt" contains a NUL character (\\u0000).')
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:
        # JSON's "\ud800" escapes decode to lone surrogates, which no database or LLM accepts.
        raise ApiError(
            400, "invalid_prompt", '"prompt" contains an unpaired surrogate (\\ud800-\\udfff).'
        ) from None
    limit = settings.MAX_PROMPT_CHARS
    if len(prompt) > limit:
        raise ApiError(
            413, "prompt_too_long", f'"prompt" has {len(prompt)} characters; the limit is {limit}.'
        )
    return prompt


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON value")
