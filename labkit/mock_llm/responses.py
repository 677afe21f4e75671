"""The Responses API wire format (`POST /v1/responses`): a request, a response object, its events.

A request becomes the same chat messages the chat endpoint would get (`instructions` first, as a
system message, then the `input`), so one prompt gets the same reply, token counts and rate-limit
cost whichever API asks. A streamed response follows OpenAI's event sequence: `response.created`,
`response.in_progress`, `response.output_item.added`, `response.content_part.added`, one
`response.output_text.delta` per token, then the `.done` events and `response.completed` (or
`response.incomplete` when `max_output_tokens` cut the reply short), which carries the usage.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from labkit.mock_llm import errors
from labkit.mock_llm.chat import ChatRequest, check_content, check_role, optional, parse_json
from labkit.mock_llm.chat import required as required_param
from labkit.mock_llm.content import Reply

ROLES = frozenset({"user", "assistant", "system", "developer"})
# OpenAI refuses fewer output tokens than this on the Responses API (chat accepts 1).
MIN_OUTPUT_TOKENS = 16
DELTA = "response.output_text.delta"


@dataclass(frozen=True)
class ResponsesRequest(ChatRequest):
    """A Responses request as chat messages, plus the fields its response object repeats."""

    echo: dict[str, Any] = field(default_factory=dict)


def parse_responses_request(body: bytes) -> ResponsesRequest:
    """Validate a Responses body; raise ApiError 400 naming the first bad parameter."""
    data = parse_json(body)
    if not isinstance(data, dict):
        raise errors.invalid_type("body", "an object", data)
    model = required_param(data, "model", str, "a string")
    instructions = optional(data, "instructions", str, "a string")
    previous = optional(data, "previous_response_id", str, "a string")
    if previous is not None:
        raise errors.ApiError(
            400,
            f"Previous response with id '{previous}' not found. (The mock LLM stores no "
            "responses: send the whole conversation as `input`.)",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    messages = [{"role": "system", "content": instructions}] if instructions else []
    messages += _input_messages(data.get("input"))
    stream = optional(data, "stream", bool, "a boolean") or False
    options = optional(data, "stream_options", dict, "an object")
    if options and not stream:
        raise errors.invalid_value(
            "stream_options", "stream_options are only allowed when 'stream' is true."
        )
    max_tokens = optional(data, "max_output_tokens", int, "an integer")
    if max_tokens is not None and max_tokens < MIN_OUTPUT_TOKENS:
        raise errors.ApiError(
            400,
            "Invalid 'max_output_tokens': integer below minimum value. Expected a value >= "
            f"{MIN_OUTPUT_TOKENS}, but got {max_tokens} instead.",
            param="max_output_tokens",
            code="integer_below_min_value",
        )
    echo = {
        "instructions": instructions,
        "max_output_tokens": max_tokens,
        "temperature": optional(data, "temperature", float, "a number"),
        "top_p": optional(data, "top_p", float, "a number"),
        "metadata": optional(data, "metadata", dict, "an object") or {},
    }
    return ResponsesRequest(
        model=model,
        messages=messages,
        stream=stream,
        include_usage=True,  # the last event always carries the usage
        max_tokens=max_tokens,
        mock=optional(data, "mock", dict, "an object"),
        echo=echo,
    )


def _input_messages(value: object) -> list[dict[str, Any]]:
    if value is None:
        raise errors.missing_param("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise errors.invalid_type("input", "a string or an array of input items", value)
    if not value:
        raise errors.invalid_value("input", "at least one input item is required ([] was sent).")
    messages = []
    for index, item in enumerate(value):
        where = f"input[{index}]"
        if not isinstance(item, dict):
            raise errors.invalid_type(where, "an object", item)
        if item.get("type", "message") != "message":
            # Tool outputs and other items: the mock has no tools, but their text is context.
            messages.append({"role": "tool", "content": json.dumps(item, sort_keys=True)})
            continue
        role = check_role(where, item, ROLES)
        if item.get("content") is None:
            raise errors.missing_param(f"{where}.content")
        check_content(where, item["content"])
        messages.append({"role": role, "content": item["content"]})
    return messages


def usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


class EventWriter:
    """Writes one response: the whole object, or its SSE events (see `service.Wire`)."""

    def __init__(self, request: ResponsesRequest, prompt_tokens: int) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.response_id = "resp_" + secrets.token_hex(24)
        self.item_id = "msg_" + secrets.token_hex(24)
        self.created = int(time.time())
        self.sequence = 0
        # Delta events differ only in their token and number; serialise the rest once.
        head = {
            "type": DELTA,
            "item_id": self.item_id,
            "output_index": 0,
            "content_index": 0,
            "logprobs": [],
        }
        self.delta_prefix = f"event: {DELTA}\ndata: {json.dumps(head)[:-1]}, ".encode()

    def response(self, reply: Reply | None) -> dict[str, Any]:
        """The response object: in progress (no reply yet), completed or incomplete."""
        status = "in_progress" if reply is None else _status(reply)
        request = self.request
        body = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "background": False,
            "completed_at": int(time.time()) if status == "completed" else None,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"}
            if status == "incomplete"
            else None,
            "instructions": request.echo.get("instructions"),
            "max_output_tokens": request.echo.get("max_output_tokens"),
            "max_tool_calls": None,
            "model": request.model,
            "output": [] if reply is None else [self.message(reply)],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "service_tier": "default",
            "store": False,
            "temperature": _or(request.echo.get("temperature"), 1.0),
            "text": {"format": {"type": "text"}, "verbosity": "medium"},
            "tool_choice": "auto",
            "tools": [],
            "top_logprobs": 0,
            "top_p": _or(request.echo.get("top_p"), 1.0),
            "truncation": "disabled",
            "metadata": request.echo.get("metadata") or {},
        }
        if reply is not None:  # the schema has no null usage: it is left out until known
            body["usage"] = usage(self.prompt_tokens, reply.completion_tokens)
        return body

    def message(self, reply: Reply | None) -> dict[str, Any]:
        """The output message item: empty while in progress, then with the reply's text."""
        return {
            "id": self.item_id,
            "type": "message",
            "status": "in_progress" if reply is None else _status(reply),
            "role": "assistant",
            "content": [] if reply is None else [_text_part(reply.text)],
        }

    def body(self, reply: Reply) -> dict[str, Any]:
        return self.response(reply)

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def opening(self) -> bytes:
        """Everything before the first token: the response and its empty message and part."""
        at = {"output_index": 0}
        part = {"item_id": self.item_id, **at, "content_index": 0}
        return b"".join(
            (
                self.event("response.created", response=self.response(None)),
                self.event("response.in_progress", response=self.response(None)),
                self.event("response.output_item.added", **at, item=self.message(None)),
                self.event("response.content_part.added", **part, part=_text_part("")),
            )
        )

    def content(self, token: str) -> bytes:
        number = self.sequence
        self.sequence += 1
        return b'%s"delta": %s, "sequence_number": %d}\n\n' % (
            self.delta_prefix,
            json.dumps(token).encode(),
            number,
        )

    def broken(self, token: str) -> bytes:
        """An event whose JSON is cut off: the `malformed` fault."""
        return self.content(token)[:-12] + b"\n\n"

    def closing(self, reply: Reply) -> bytes:
        """The `.done` events, then `response.completed` (or `.incomplete`) with the usage."""
        at = {"output_index": 0}
        part = {"item_id": self.item_id, **at, "content_index": 0}
        final = self.response(reply)
        return b"".join(
            (
                self.event("response.output_text.done", **part, text=reply.text, logprobs=[]),
                self.event("response.content_part.done", **part, part=_text_part(reply.text)),
                self.event("response.output_item.done", **at, item=self.message(reply)),
                self.event(f"response.{final['status']}", response=final),
            )
        )


def _status(reply: Reply) -> str:
    return "incomplete" if reply.finish_reason == "length" else "completed"


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value
