"""The mock's behaviour, independent of any server: one request in, one response out.

`MockService.serve(incoming, sink)` routes a request, applies settings, limits, faults and
latency, and writes the response to a `Sink`. The ASGI app (real TCP) and the in-process
transport (no network) are thin adapters around it, so both give the same answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from labkit.mock_llm import chat, errors, responses
from labkit.mock_llm.content import Reply, prompt_tokens, reply_for
from labkit.mock_llm.errors import ApiError
from labkit.mock_llm.faults import StreamCut, choose
from labkit.mock_llm.latency import PRESETS, Timing
from labkit.mock_llm.limits import RateLimiter
from labkit.mock_llm.settings import PER_REQUEST_KEYS, Settings, SettingsError
from labkit.mock_llm.stats import ConnectionKey, Stats

logger = logging.getLogger("labkit.mock_llm")

STREAM_WRITE_INTERVAL_S = 0.02
MODEL_CREATED = 1_700_000_000  # a fixed "created" date for the models the mock lists
ROUTES: dict[str, tuple[str, ...]] = {
    "/v1/chat/completions": ("POST",),
    "/v1/responses": ("POST",),
    "/v1/models": ("GET",),
    "/_mock/health": ("GET",),
    "/_mock/stats": ("GET",),
    "/_mock/reset": ("POST",),
    "/_mock/config": ("GET", "POST"),
}
ADMIN_PREFIX = "/_mock/"
# A locked mock (the grader's): admin calls need this token, calls may not change settings,
# and replies are salted, so a reply cannot be computed without calling the server.
ENV_ADMIN_TOKEN = "LAB_MOCK_ADMIN_TOKEN"
ENV_REPLY_SALT = "LAB_MOCK_REPLY_SALT"
ADMIN_TOKEN_HEADER = "x-mock-admin-token"


@dataclass
class Incoming:
    """A request as the service sees it; header names are lower case."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client: ConnectionKey | None = None  # the TCP peer, when there is a real connection
    rejection: ApiError | None = None  # set by an adapter that refused the request already


class Sink(Protocol):
    """Where a response goes: a status and headers once, then body data."""

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None: ...

    async def write(self, data: bytes, more: bool = False) -> None: ...


class _Recorder:
    """Pass writes through to a sink, remembering the status sent."""

    def __init__(self, sink: Sink, request_id: str) -> None:
        self.sink = sink
        self.request_id = request_id
        self.status: int | None = None

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status
        await self.sink.start(status, [("x-request-id", self.request_id), *headers])

    async def write(self, data: bytes, more: bool = False) -> None:
        await self.sink.write(data, more)

    async def json(self, status: int, value: Any, headers: Sequence[tuple[str, str]] = ()) -> None:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        await self.start(
            status,
            [("content-type", "application/json"), ("content-length", str(len(body))), *headers],
        )
        await self.write(body)


class Wire(Protocol):
    """One API's way of writing a reply: whole, or as the events of a stream."""

    def body(self, reply: Reply) -> dict[str, Any]: ...

    def opening(self) -> bytes: ...

    def content(self, token: str) -> bytes: ...

    def broken(self, token: str) -> bytes: ...

    def closing(self, reply: Reply) -> bytes: ...


@dataclass(frozen=True)
class Api:
    """A generating endpoint: how to read its request, and how to write its answer."""

    parse: Callable[[bytes], chat.ChatRequest]
    wire: Callable[[Any, int], Wire]


# Both endpoints share one path through limits, faults, latency and stats; only the format differs.
APIS: dict[str, Api] = {
    "/v1/chat/completions": Api(chat.parse_chat_request, chat.ChunkWriter),
    "/v1/responses": Api(responses.parse_responses_request, responses.EventWriter),
}


class MockService:
    """Answers OpenAI-style requests from settings that can change while it runs."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.initial = settings or Settings()
        self.admin_token = os.environ.get(ENV_ADMIN_TOKEN) or None
        self.reply_salt = os.environ.get(ENV_REPLY_SALT) or None
        self.stats = Stats()
        self.limiter = RateLimiter()
        self._apply(self.initial)

    def _apply(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter.configure(settings.rpm, settings.tpm, settings.rate_window_s)
        self.rng = random.Random(settings.seed)

    def configure(self, changes: Mapping[str, Any]) -> Settings:
        """Apply setting changes (raises SettingsError) and return the new settings."""
        self._apply(self.settings.updated(changes))
        return self.settings

    def reset(self, config: bool = False) -> None:
        """Zero the stats and refill rate limits; with `config`, restore the start settings."""
        self.stats.reset()
        if config:
            self._apply(self.initial)
        self.limiter.reset()

    async def serve(self, incoming: Incoming, sink: Sink) -> None:
        """Answer one request; never raises for a bad request, only for StreamCut."""
        out = _Recorder(sink, "req_" + secrets.token_hex(12))
        admin = incoming.path.startswith(ADMIN_PREFIX)
        first = self.stats.first_request(incoming.client, admin)
        if admin:
            await self._guarded(self._admin, incoming, out)
            return
        call = _Call()
        self.stats.call_started()
        cancelled = False
        try:
            if first and self.settings.connect_delay_s:
                # Stands in for a TLS handshake: paid once per connection, saved by pooling.
                await asyncio.sleep(self.settings.connect_delay_s)
            await self._guarded(self._api, incoming, out, call)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # A cut or garbled body is a failure even though its status said 200.
            failed = call.fault in ("cut", "malformed")
            self.stats.call_ended(out.status or 500, call.model, cancelled, failed, call.endpoint)

    async def _guarded(self, handler: Any, incoming: Incoming, out: _Recorder, *args: Any) -> None:
        try:
            if incoming.rejection is not None:
                raise incoming.rejection
            await handler(incoming, out, *args)
        except ApiError as error:
            if out.status is not None:
                raise
            await out.json(error.status, error.body(), error.headers)
        except (StreamCut, asyncio.CancelledError):
            raise
        except Exception as error:
            logger.warning(
                "mock LLM bug answering %s %s", incoming.method, incoming.path, exc_info=True
            )
            if out.status is not None:
                raise
            bug = ApiError(
                500, f"The mock LLM failed: {type(error).__name__}: {error}", type="server_error"
            )
            await out.json(500, bug.body())

    def _route(self, incoming: Incoming) -> str:
        path = incoming.path
        allowed = ROUTES.get(path)
        if allowed is None and path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
            allowed = ("GET",)
        if allowed is None:
            raise errors.unknown_url(incoming.method, path)
        if incoming.method not in allowed:
            raise errors.method_not_allowed(incoming.method, path, allowed)
        return path

    async def _admin(self, incoming: Incoming, out: _Recorder) -> None:
        path = self._route(incoming)
        if self.admin_token is not None and path != "/_mock/health":
            given = incoming.headers.get(ADMIN_TOKEN_HEADER, "")
            if not secrets.compare_digest(given.encode(), self.admin_token.encode()):
                raise ApiError(
                    403, "This mock's admin API needs its admin token.", code="forbidden"
                )
        if path == "/_mock/health":
            await out.json(200, {"status": "ok", "preset": self.settings.preset})
        elif path == "/_mock/stats":
            await out.json(200, self.stats.snapshot())
        elif path == "/_mock/reset":
            body = chat.parse_json(incoming.body) if incoming.body.strip() else {}
            if not isinstance(body, dict):
                raise errors.invalid_type("body", "an object", body)
            self.reset(config=bool(body.get("config")))
            await out.json(200, self.stats.snapshot())
        elif incoming.method == "POST":
            changes = chat.parse_json(incoming.body)
            if not isinstance(changes, dict):
                raise errors.invalid_type("body", "an object of settings", changes)
            try:
                self.configure(changes)
            except SettingsError as error:
                raise ApiError(400, str(error), code="invalid_setting") from None
            await out.json(200, self.settings.to_json())
        else:
            await out.json(200, self.settings.to_json())

    async def _api(self, incoming: Incoming, out: _Recorder, call: _Call) -> None:
        self._authorize(incoming.headers)
        path = self._route(incoming)
        if path == "/v1/models":
            models = [_model(name) for name in self.settings.models if name != "*"]
            await out.json(200, {"object": "list", "data": models})
        elif path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if not self.settings.accepts(name):
                raise errors.model_not_found(name)
            await out.json(200, _model(name))
        else:
            await self._generate(incoming, out, call, APIS[path])

    def _authorize(self, headers: Mapping[str, str]) -> None:
        """Raise OpenAI's 401 unless the call carries the configured key (if there is one)."""
        expected = self.settings.api_key
        if expected is None:
            return
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise errors.unauthorized(sent=False)
        if not secrets.compare_digest(key.strip().encode(), expected.encode()):
            raise errors.unauthorized(sent=True)

    def _per_request(self, request: chat.ChatRequest, headers: Mapping[str, str]) -> Settings:
        """The settings for one call: the server's, changed by its `mock` field and headers."""
        changes: dict[str, Any] = dict(request.mock or {})
        if self.admin_token is not None and (
            changes or any(name.startswith("x-mock-") for name in headers)
        ):
            raise ApiError(
                403,
                "This mock does not take per-call settings (x-mock-* headers or a `mock` "
                "field): it is locked by its owner.",
                code="forbidden",
            )
        latency = headers.get("x-mock-latency")
        if latency is not None:
            try:
                changes["latency_s"] = float(latency)
            except ValueError:
                if latency.strip() not in PRESETS:
                    raise errors.invalid_value(
                        "x-mock-latency",
                        f"{latency!r} is neither seconds (1.5) nor a preset "
                        f"({', '.join(PRESETS)}).",
                    ) from None
                changes["preset"] = latency.strip()
        if "x-mock-fault" in headers:
            changes["fault"] = headers["x-mock-fault"]
        if not changes:
            return self.settings
        refused = set(changes) - PER_REQUEST_KEYS
        if refused:
            raise errors.invalid_value(
                "mock",
                f"{', '.join(sorted(refused))} cannot be set per request (only "
                f"{', '.join(sorted(PER_REQUEST_KEYS))}); use POST /_mock/config.",
            )
        if str(changes.get("fault", "")).strip().lower() == "none":
            changes["faults"] = {}  # "none" means no fault at all, not "the usual odds"
        try:
            return self.settings.updated(changes)
        except SettingsError as error:
            raise errors.invalid_value("mock", str(error)) from None

    async def _generate(self, incoming: Incoming, out: _Recorder, call: _Call, api: Api) -> None:
        """Validate, admit, maybe fail, then answer whole or streamed."""
        call.endpoint = incoming.path
        request = api.parse(incoming.body)
        if not self.settings.accepts(request.model):
            raise errors.model_not_found(request.model)
        call.model = request.model
        settings = self._per_request(request, incoming.headers)
        seed = request.seed if self.reply_salt is None else f"{self.reply_salt}:{request.seed}"
        reply = reply_for(
            request.model, request.messages, seed, request.max_tokens, settings.reply_tokens
        )
        prompt = prompt_tokens(request.messages)
        headers = self.limiter.admit(prompt + reply.completion_tokens, request.model)
        call.fault = settings.fault or choose(settings.faults, self.rng)
        if call.fault is not None:
            self.stats.fault_injected(call.fault)
        if call.fault in ("500", "503"):
            raise errors.server_error(int(call.fault))  # type: ignore[arg-type]
        timing = settings.latency.sample(reply.completion_tokens, self.rng)
        if call.fault == "hang":
            await asyncio.sleep(settings.hang_s)
        answer = _Answer(reply, timing, call.fault, headers, api.wire(request, prompt))
        if request.stream:
            self.stats.streams_total += 1
            await self._stream(answer, out)
        else:
            await self._complete(answer, out)
        self.stats.tokens_used(request.model, prompt, reply.completion_tokens)

    async def _complete(self, answer: _Answer, out: _Recorder) -> None:
        """Sleep the whole latency, then send the completion in one body."""
        if answer.timing.total_s > 0:
            await asyncio.sleep(answer.timing.total_s)
        data = json.dumps(answer.wire.body(answer.reply)).encode()
        if answer.fault == "cut":
            length = ("content-length", str(len(data)))
            await out.start(200, [("content-type", "application/json"), length, *answer.headers])
            await out.write(data[: len(data) // 2], more=True)
            raise StreamCut("mock fault: body cut half way")
        if answer.fault == "malformed":
            data = data[: len(data) // 2]
        await out.json(200, data, answer.headers)

    async def _stream(self, answer: _Answer, out: _Recorder) -> None:
        """Send SSE events on the latency model's schedule; the body ends with the last."""
        sse = ("content-type", "text/event-stream; charset=utf-8")
        await out.start(200, [sse, ("cache-control", "no-cache"), *answer.headers])
        timing, tokens, writer = answer.timing, answer.reply.tokens, answer.wire
        loop = asyncio.get_running_loop()
        began = loop.time()
        pending = [writer.opening()]
        half = len(tokens) // 2
        # Tokens go out in groups at most every STREAM_WRITE_INTERVAL_S (each group at its
        # first token's time), as real servers flush them: a fast model's 6 ms tokens would
        # otherwise cost a timer and a write each, and most of the mock's CPU.
        per_write = 1
        if timing.per_token_s:
            per_write = max(1, math.ceil(STREAM_WRITE_INTERVAL_S / timing.per_token_s))
        for index, token in enumerate(tokens):
            wait = began + timing.token_offset_s(index) - loop.time()
            if wait > 0 and index % per_write == 0:
                if index:
                    await out.write(b"".join(pending), more=True)
                    pending = []
                await asyncio.sleep(wait)
            if answer.fault == "cut" and index == half:
                await out.write(b"".join(pending), more=True)
                raise StreamCut("mock fault: stream cut half way")
            broken = answer.fault == "malformed" and index == half
            pending.append(writer.broken(token) if broken else writer.content(token))
        wait = began + timing.total_s - loop.time()
        if wait > 0:
            await out.write(b"".join(pending), more=True)
            pending = []
            await asyncio.sleep(wait)
        pending.append(writer.closing(answer.reply))
        await out.write(b"".join(pending))  # the body ends with the last event, at once


@dataclass
class _Call:
    """What the stats need to know about a call once it ends."""

    model: str | None = None
    fault: str | None = None
    endpoint: str | None = None


@dataclass
class _Answer:
    """Everything decided about a call before its response starts."""

    reply: Reply
    timing: Timing
    fault: str | None
    headers: list[tuple[str, str]]
    wire: Wire


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": MODEL_CREATED, "owned_by": "mock-llm"}
