"""The mock in process: an httpx2 transport for unit checks that need no server.

    transport = MockLLMTransport(preset="instant")
    client = openai.AsyncOpenAI(
        api_key="any", http_client=openai.DefaultAsyncHttpxClient(transport=transport)
    )

It runs the same `MockService` as the server, so content, latency, limits, faults and stats are
the same; only TCP is missing (no connections to count, no connect delay). Client timeouts still
apply: a call that outlasts the request's read timeout raises `httpx2.ReadTimeout`, and a `cut`
fault raises `httpx2.RemoteProtocolError`, as they would over a network.

Plain `httpx` clients (the ones respx can intercept) are served by `handle_httpx`:
`respx.route(host="mock.local").mock(side_effect=transport.handle_httpx)`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2

from labkit.mock_llm.faults import StreamCut
from labkit.mock_llm.service import Incoming, MockService
from labkit.mock_llm.settings import Settings

_END = object()


class _Exchange:
    """A `Sink` that hands the response head and body over to a client through a queue."""

    def __init__(self, request: httpx2.Request) -> None:
        self.request = request
        self.head: asyncio.Future[tuple[int, list[tuple[str, str]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        timeout = request.extensions.get("timeout") or {}
        self.read_timeout: float | None = timeout.get("read")

    async def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.head.set_result((status, headers))

    async def write(self, data: bytes, more: bool = False) -> None:
        self.queue.put_nowait(data)
        if not more:
            self.queue.put_nowait(_END)

    def served(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            self.queue.put_nowait(_END)
        elif isinstance(task.exception(), StreamCut):
            self.queue.put_nowait(
                httpx2.RemoteProtocolError(
                    "peer closed connection without sending complete message body "
                    "(the mock LLM's 'cut' fault)",
                    request=self.request,
                )
            )
        elif task.exception() is not None:
            self.queue.put_nowait(task.exception())

    async def next_chunk(self) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), self.read_timeout)
        except TimeoutError:
            raise httpx2.ReadTimeout("mock LLM: read timed out", request=self.request) from None

    async def cancel(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class _AsyncStream(httpx2.AsyncByteStream):
    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (item := await self.exchange.next_chunk()) is not _END:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def aclose(self) -> None:
        # A client that stops reading hangs up: the call is cancelled, as over TCP.
        await self.exchange.cancel()


class _SyncStream(httpx2.SyncByteStream):
    def __init__(self, exchange: _Exchange, loop: asyncio.AbstractEventLoop) -> None:
        self.exchange = exchange
        self.loop = loop

    def __iter__(self) -> Iterator[bytes]:
        while True:
            if not self.loop.is_running():
                raise httpx2.ReadError(
                    "the MockLLMTransport was closed", request=self.exchange.request
                )
            future = asyncio.run_coroutine_threadsafe(self.exchange.next_chunk(), self.loop)
            item = future.result()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self.exchange.cancel(), self.loop).result()


class MockLLMTransport(httpx2.MockTransport):
    """An httpx2 transport answering like the mock LLM server, in this process."""

    def __init__(self, preset: str = "instant", **settings: Any) -> None:
        self.service = MockService(Settings.from_preset(preset, **settings))
        super().__init__(self._open)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def _open(self, request: httpx2.Request) -> _Exchange:
        exchange = _Exchange(request)
        incoming = Incoming(
            method=request.method,
            path=request.url.path,
            headers={name.lower(): value for name, value in request.headers.items()},
            body=request.content,
        )
        exchange.task = asyncio.ensure_future(self.service.serve(incoming, exchange))
        exchange.task.add_done_callback(exchange.served)
        try:
            await asyncio.wait(
                (exchange.head, exchange.task),
                timeout=exchange.read_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            await exchange.cancel()
            raise
        if not exchange.head.done():
            if not exchange.task.done():
                await exchange.cancel()
                raise httpx2.ReadTimeout("mock LLM: read timed out", request=request)
            exchange.task.result()  # re-raise what stopped the service before it answered
            raise httpx2.RemoteProtocolError("mock LLM closed without answering", request=request)
        return exchange

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        exchange = await self._open(request)
        status, headers = exchange.head.result()
        return httpx2.Response(status, headers=headers, stream=_AsyncStream(exchange))

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        # A sync client may run where an event loop is already running (a notebook), so the
        # service gets a loop of its own on a helper thread.
        request.read()
        loop = self._background_loop()
        exchange = asyncio.run_coroutine_threadsafe(self._open(request), loop).result()
        status, headers = exchange.head.result()
        return httpx2.Response(status, headers=headers, stream=_SyncStream(exchange, loop))

    def _background_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="mock-llm-transport", daemon=True
                )
                self._thread.start()
            return self._loop

    def close(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            loop.close()

    async def aclose(self) -> None:
        self.close()

    async def handle_httpx(self, request: Any) -> Any:
        """Answer a plain `httpx` request: a respx side effect or `httpx.MockTransport` handler.

        respx intercepts only plain httpx clients (not httpx2), e.g.
        `respx.post(url__startswith=base_url).mock(side_effect=transport.handle_httpx)`.
        """
        import httpx

        await request.aread()
        try:
            response = await self.handle_async_request(
                httpx2.Request(
                    request.method,
                    str(request.url),
                    headers=request.headers.raw,
                    content=request.content,
                    extensions=request.extensions,
                )
            )
        except httpx2.ReadTimeout as error:
            raise httpx.ReadTimeout(str(error), request=request) from None

        async def body() -> AsyncIterator[bytes]:
            try:
                async for chunk in response.aiter_raw():
                    yield chunk
            except httpx2.RemoteProtocolError as error:
                raise httpx.RemoteProtocolError(str(error), request=request) from None
            except httpx2.ReadTimeout as error:
                raise httpx.ReadTimeout(str(error), request=request) from None
            finally:
                await response.aclose()

        return httpx.Response(
            response.status_code, headers=response.headers.raw, content=body(), request=request
        )

    # The same helpers as MockLLM
    def stats(self) -> dict[str, Any]:
        """Return the counters, as GET /_mock/stats would."""
        return self.service.stats.snapshot()

    def reset(self, config: bool = False) -> dict[str, Any]:
        """Zero the counters and refill rate limits; `config=True` also restores settings."""
        self.service.reset(config=config)
        return self.stats()

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings, e.g. `configure(latency_s=0.2, faults={"503": 0.5})`."""
        return self.service.configure(settings).to_json()

    def config(self) -> dict[str, Any]:
        return self.service.settings.to_json()
