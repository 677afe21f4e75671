"""Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}` and a status.

The messages follow the wording of OpenAI's API where it has one, so what a learner sees from the
mock is what they would see from the real service.
"""

from __future__ import annotations

import json
from collections.abc import Sequence


class ApiError(Exception):
    """An HTTP error answer with OpenAI's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = list(headers)

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode()


def json_type(value: object) -> str:
    """Name a parsed JSON value's type the way OpenAI's messages do."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid_json(detail: str) -> ApiError:
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        f"sent was not valid JSON: {detail})",
    )


def missing_param(param: str) -> ApiError:
    return ApiError(
        400,
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def invalid_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {json_type(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, message: str) -> ApiError:
    return ApiError(
        400, f"Invalid value for '{param}': {message}", param=param, code="invalid_value"
    )


def unauthorized(sent: bool) -> ApiError:
    """OpenAI's 401; the key that was sent is never repeated back."""
    if not sent:
        return ApiError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization "
            "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
    return ApiError(
        401,
        "Incorrect API key provided. (The mock LLM was started with an api_key setting.)",
        code="invalid_api_key",
    )


def model_not_found(model: str) -> ApiError:
    return ApiError(
        404,
        f"The model `{model}` does not exist or you do not have access to it. "
        "(The mock LLM serves the models listed at GET /v1/models.)",
        param="model",
        code="model_not_found",
    )


def unknown_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})", code="unknown_url")


def method_not_allowed(method: str, path: str, allowed: Sequence[str]) -> ApiError:
    allow = ", ".join(allowed)
    return ApiError(
        405,
        f"Method {method} is not allowed for {path}; use {allow}.",
        code="method_not_allowed",
        headers=[("allow", allow)],
    )


def body_too_large(limit: int) -> ApiError:
    return ApiError(
        413, f"The request body is larger than the mock accepts ({limit} bytes).", code="too_large"
    )


def server_error(status: int) -> ApiError:
    """The 500 or 503 an injected fault answers with."""
    if status == 503:
        message = "The engine is currently overloaded, please try again later. (mock fault)"
    else:
        message = (
            "The server had an error while processing your request. Sorry about that! (mock fault)"
        )
    return ApiError(status, message, type="server_error")
