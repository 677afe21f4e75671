"""The chat-completions wire format: validating a request, and writing replies and chunks.

Validation is deliberately narrow: fields the mock uses are type-checked with OpenAI's messages,
anything else is accepted and ignored (as newer SDKs send parameters the mock has no use for).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from labkit.mock_llm import errors
from labkit.mock_llm.content import Reply

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
SYSTEM_FINGERPRINT = "fp_mock"


@dataclass(frozen=True)
class ChatRequest:
    """The parts of a chat-completions request the mock acts on."""

    model: str
    messages: list[dict[str, Any]]
    stream: bool = False
    include_usage: bool = False
    max_tokens: int | None = None
    seed: int | None = None
    mock: Mapping[str, Any] | None = None


def parse_json(body: bytes) -> Any:
    """Parse a request body or raise OpenAI's 400 for unparseable JSON."""
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise errors.invalid_json(str(error) if body.strip() else "the body is empty") from None


def parse_chat_request(body: bytes) -> ChatRequest:
    """Validate a chat-completions body; raise ApiError 400 naming the first bad parameter."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise errors.invalid_type("body", "an object", data)
    model = required(data, "model", str, "a string")
    messages = required(data, "messages", list, "an array")
    if not messages:
        raise errors.invalid_value("messages", "at least one message is required ([] was sent).")
    for index, message in enumerate(messages):
        _check_message(index, message)
    stream = optional(data, "stream", bool, "a boolean") or False
    options = optional(data, "stream_options", dict, "an object") or {}
    include_usage = optional(options, "include_usage", bool, "a boolean", "stream_options.")
    if options and not stream:
        raise errors.invalid_value(
            "stream_options", "stream_options are only allowed when 'stream' is true."
        )
    max_tokens = None
    for name in ("max_completion_tokens", "max_tokens"):
        value = optional(data, name, int, "an integer")
        if value is not None and value < 1:
            raise errors.invalid_value(name, f"{value} is below the minimum of 1.")
        max_tokens = value if max_tokens is None else max_tokens
    n = optional(data, "n", int, "an integer")
    if n not in (None, 1):
        raise errors.invalid_value(
            "n", f"the mock answers with one choice; n={n} is not supported."
        )
    optional(data, "temperature", float, "a number")
    return ChatRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=bool(include_usage),
        max_tokens=max_tokens,
        seed=optional(data, "seed", int, "an integer"),
        mock=optional(data, "mock", dict, "an object"),
    )


def required(data: Mapping[str, Any], name: str, kind: type, expected: str) -> Any:
    if data.get(name) is None:
        raise errors.missing_param(name)
    return optional(data, name, kind, expected)


def optional(
    data: Mapping[str, Any], name: str, kind: type, expected: str, prefix: str = ""
) -> Any:
    value = data.get(name)
    if value is None:
        return None
    # JSON's true is a Python int: booleans only pass where a boolean is expected.
    ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
    if ok and (kind is bool or not isinstance(value, bool)):
        return value
    raise errors.invalid_type(prefix + name, expected, value)


def _check_message(index: int, message: object) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise errors.invalid_type(where, "an object", message)
    role = check_role(where, message, ROLES)
    content = message.get("content")
    if content is None:
        # Only an assistant message that calls tools may leave its content out.
        if role == "assistant" and message.get("tool_calls"):
            return
        raise errors.missing_param(f"{where}.content")
    check_content(where, content)


def check_role(where: str, message: Mapping[str, Any], roles: frozenset[str]) -> str:
    """Return the message's role, or raise the 400 for a missing or unknown one."""
    role = message.get("role")
    if role is None:
        raise errors.missing_param(f"{where}.role")
    if role not in roles:
        raise errors.invalid_value(
            f"{where}.role", f"{role!r} is not one of {', '.join(sorted(roles))}."
        )
    return str(role)


def check_content(where: str, content: object) -> None:
    """Accept a string or a list of typed parts; raise the 400 for anything else."""
    if isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise errors.invalid_type(
                    f"{where}.content[{part_index}]", "an object with a 'type'", part
                )
    elif not isinstance(content, str):
        raise errors.invalid_type(f"{where}.content", "a string or an array of parts", content)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion(
    call_id: str, created: int, model: str, reply: Reply, prompt_tokens: int
) -> dict[str, Any]:
    """The body of a non-streamed chat completion."""
    message = {"role": "assistant", "content": reply.text, "refusal": None, "annotations": []}
    return {
        "id": call_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, reply.completion_tokens),
        "service_tier": "default",
        "system_fingerprint": SYSTEM_FINGERPRINT,
    }


class ChunkWriter:
    """Writes one chat completion: the whole body, or its SSE chunks (see `service.Wire`)."""

    def __init__(self, request: ChatRequest, prompt_tokens: int) -> None:
        self.call_id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = request.model
        self.prompt_tokens = prompt_tokens
        self.include_usage = request.include_usage
        # Every chunk repeats these fields; serialise them once per call, not once per token.
        head = {
            "id": self.call_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": request.model,
            "service_tier": "default",
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        self.prefix = b"data: " + json.dumps(head)[:-1].encode() + b", "
        self.suffix = b', "usage": null}\n\n' if request.include_usage else b"}\n\n"

    def body(self, reply: Reply) -> dict[str, Any]:
        return completion(self.call_id, self.created, self.model, reply, self.prompt_tokens)

    def opening(self) -> bytes:
        return self.role()

    def closing(self, reply: Reply) -> bytes:
        """The finish chunk, the usage chunk if asked for, and [DONE]."""
        usage = (
            self.usage(self.prompt_tokens, reply.completion_tokens) if self.include_usage else b""
        )
        return self.finish(reply.finish_reason) + usage + self.done()

    def _event(self, choices: str, suffix: bytes | None = None) -> bytes:
        return self.prefix + b'"choices": ' + choices.encode() + (suffix or self.suffix)

    def delta(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return self._event(json.dumps([choice]))

    def role(self) -> bytes:
        return self.delta({"role": "assistant", "content": "", "refusal": None})

    def content(self, token: str) -> bytes:
        return self.delta({"content": token})

    def finish(self, finish_reason: str) -> bytes:
        return self.delta({}, finish_reason)

    def usage(self, prompt_tokens: int, completion_tokens: int) -> bytes:
        body = json.dumps(usage(prompt_tokens, completion_tokens))
        return self._event("[]", b', "usage": ' + body.encode() + b"}\n\n")

    def broken(self, token: str) -> bytes:
        """An event whose JSON is cut off: the `malformed` fault."""
        return self.content(token)[:-12] + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"
