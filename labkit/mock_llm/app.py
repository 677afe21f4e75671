"""The mock as a raw ASGI app: body in, `MockService` response out, client disconnects noticed.

No framework: the app is one small class so the server spends its CPU on requests, not on
routing layers (it must sustain 150+ calls/s of 1 s latency on one core).
"""

from __future__ import annotations

import asyncio
from typing import Any

from labkit.mock_llm import errors
from labkit.mock_llm.service import Incoming, MockService
from labkit.mock_llm.settings import Settings

Scope = dict[str, Any]
Message = dict[str, Any]
MAX_BODY_BYTES = 8 * 1024 * 1024


class _AsgiSink:
    """Turn `Sink` calls into ASGI messages."""

    def __init__(self, send: Any) -> None:
        self.send = send
        self.finished = False

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def write(self, data: bytes, more: bool = False) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})
        self.finished = not more


class MockLLMApp:
    """ASGI application serving a `MockService`."""

    def __init__(self, service: MockService) -> None:
        self.service = service

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # websockets are not part of the API; uvicorn refuses them for us
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            part = message.get("body", b"")
            size += len(part)
            if size <= MAX_BODY_BYTES:
                parts.append(part)
            if not message.get("more_body"):
                break
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        client = scope.get("client")
        incoming = Incoming(
            method=scope["method"],
            path=scope["path"],
            headers=headers,
            body=b"".join(parts),
            client=tuple(client) if client else None,  # type: ignore[arg-type]
        )
        if size > MAX_BODY_BYTES:
            incoming.rejection = errors.body_too_large(MAX_BODY_BYTES)
        await self._serve_until_disconnect(incoming, _AsgiSink(send), receive)

    async def _serve_until_disconnect(
        self, incoming: Incoming, sink: _AsgiSink, receive: Any
    ) -> None:
        """Run the call, cancelling it if the client goes away first.

        Without this a client that gave up would leave the call sleeping, and `in_flight`
        would not show that cancellation happened.
        """
        work = asyncio.ensure_future(self.service.serve(incoming, sink))
        watch = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done() and not sink.finished:
                work.cancel()
            watch.cancel()
        try:
            await work
        except asyncio.CancelledError:
            if not watch.cancelled() and watch.done():
                return  # the client left; the service has counted the cancellation
            raise


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_app(preset: str = "fast", **settings: Any) -> MockLLMApp:
    """Build the ASGI app, e.g. `uvicorn.run(create_app(preset="instant"))`."""
    return MockLLMApp(MockService(Settings.from_preset(preset, **settings)))
