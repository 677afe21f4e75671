"""Talking to the LLM: client options from settings, and LLM faults mapped to HTTP answers.

Both of OpenAI's APIs are understood: a chat completion (`client.chat.completions.create`) and
a Responses API result (`client.responses.create`) fill the same `CallRecord`, whose token
counts (chat's prompt/completion, Responses' input/output) price the call either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import openai
from django.conf import settings
from django.http import JsonResponse

from labproject.ai.api import error_response


def client_options() -> dict[str, Any]:
    """Keyword arguments for `openai.OpenAI` / `openai.AsyncOpenAI` from the settings."""
    return {
        "base_url": settings.LLM_BASE_URL,
        "api_key": settings.LLM_API_KEY,
        "timeout": settings.LLM_TIMEOUT_S,
        "max_retries": settings.LLM_MAX_RETRIES,
    }


def chat_options() -> dict[str, Any]:
    """The model and reply budget every `chat.completions.create` call sends."""
    return {"model": settings.LLM_MODEL, "max_tokens": settings.LLM_MAX_TOKENS}


def responses_options() -> dict[str, Any]:
    """The model and reply budget every `responses.create` call sends."""
    return {"model": settings.LLM_MODEL, "max_output_tokens": settings.LLM_MAX_TOKENS}


def messages_for(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    """The chat messages for one user prompt, with an optional system prompt."""
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


@dataclass
class CallRecord:
    """What a view logs about one LLM call: `AICall(**record.fields())`."""

    endpoint: str
    prompt: str
    model: str = ""
    started: float = field(default_factory=time.perf_counter)
    reply: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ok: bool = True
    error: str = ""

    def succeeded(self, result: Any) -> CallRecord:
        """Fill the record from a ChatCompletion or a Responses API `Response`.

        A streamed Response arrives whole in its last event: `record.succeeded(event.response)`.
        """
        self.latency_ms = (time.perf_counter() - self.started) * 1000
        self.model = result.model
        self.reply = reply_text(result)
        self.prompt_tokens, self.completion_tokens = token_counts(result)
        return self

    def failed(self, failure: LLMFailure) -> CallRecord:
        self.latency_ms = (time.perf_counter() - self.started) * 1000
        self.ok = False
        self.error = f"{failure.code}: {failure.message}"[:500]
        return self

    def response(self, **extra: Any) -> JsonResponse:
        """The API's answer for a successful call: reply, model, usage and `extra` fields."""
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}
        return JsonResponse({"reply": self.reply, "model": self.model, "usage": usage, **extra})

    def fields(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "prompt": self.prompt,
            "reply": self.reply,
            "model": self.model or settings.LLM_MODEL,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_ms": self.latency_ms,
            "ok": self.ok,
            "error": self.error,
        }


def is_response(result: Any) -> bool:
    """True for a Responses API result (`object == "response"`), False for a chat completion."""
    return getattr(result, "object", None) == "response"


def reply_text(result: Any) -> str:
    """The reply's text: `output_text` of a Response, the first choice's content of a chat."""
    if is_response(result):
        return result.output_text
    return result.choices[0].message.content or ""


def token_counts(result: Any) -> tuple[int, int]:
    """(prompt, completion) tokens; a Response calls them input and output tokens."""
    usage = result.usage
    if usage is None:
        return 0, 0
    if is_response(result):
        return usage.input_tokens, usage.output_tokens
    return usage.prompt_tokens, usage.completion_tokens


class ResponseFailed(Exception):
    """A Responses API result whose status is `failed`: a fault that came with a 200."""

    def __init__(self, response: Any) -> None:
        error = getattr(response, "error", None)
        self.code = getattr(error, "code", None) or "failed"
        super().__init__(getattr(error, "message", None) or "the response failed")


def raise_if_failed(result: Any) -> Any:
    """Return `result`, or raise ResponseFailed if it is a Response whose status is `failed`.

    Chat completions fail only with an HTTP error; a Response can also end `failed` (a stream's
    `response.failed` event, a background response), which `failure_from` then maps.
    """
    if is_response(result) and result.status == "failed":
        raise ResponseFailed(result)
    return result


@dataclass
class LLMFailure:
    """An LLM fault as the API reports it: 504 timeout, 429/503 with Retry-After, 502 otherwise."""

    status: int
    code: str
    message: str
    retry_after: str | None = None

    def response(self):
        headers = {"Retry-After": self.retry_after} if self.retry_after else None
        return error_response(self.status, self.code, self.message, headers)


def failure_from(exc: Exception) -> LLMFailure:
    """Map an exception raised while calling the LLM to the answer the API gives."""
    if isinstance(exc, openai.APITimeoutError):
        return LLMFailure(504, "llm_timeout", "the LLM did not answer in time.")
    if isinstance(exc, openai.RateLimitError):
        retry = exc.response.headers.get("retry-after") or "1"
        return LLMFailure(429, "llm_rate_limited", "the LLM provider is rate limiting us.", retry)
    if isinstance(exc, openai.APIStatusError) and exc.status_code >= 500:
        return LLMFailure(
            503, "llm_unavailable", f"the LLM answered {exc.status_code}; try again shortly.", "1"
        )
    if isinstance(exc, openai.APIStatusError):
        return LLMFailure(502, "llm_rejected", f"the LLM refused the request ({exc.status_code}).")
    if isinstance(exc, openai.APIConnectionError):
        return LLMFailure(502, "llm_unreachable", "could not reach the LLM.")
    if isinstance(exc, ResponseFailed):
        return LLMFailure(502, "llm_failed", f"the LLM's response failed ({exc.code}).")
    return LLMFailure(
        502, "llm_bad_response", f"the LLM's answer could not be used ({type(exc).__name__})."
    )
