"""Serving the mock over real TCP with uvicorn, counting every connection it accepts.

Connections are counted in the protocol, not in the app. uvicorn makes one protocol object per
accepted socket, so `connection_made`/`connection_lost` are exactly the TCP connections, including
ones that close without a request. Keying on `scope["client"]` alone would miss those, could not
tell when a connection closed (so no `connections_open`), and would confuse a new connection that
reuses a closed one's port with the old one. The app still looks connections up by
`scope["client"]` (the peer's address and port, unique among open connections) to find a
request's connection and charge the connect delay on its first request.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from uvicorn import Config, Server
from uvicorn.protocols.http.h11_impl import H11Protocol

from labkit.mock_llm.app import MockLLMApp
from labkit.mock_llm.faults import StreamCut
from labkit.mock_llm.service import MockService
from labkit.mock_llm.stats import Stats

HOST = "127.0.0.1"  # loopback only: the mock is never reachable from another machine
# Real APIs keep idle connections for a minute or so; uvicorn's default 5 s would close pooled
# connections between notebook cells and hide what pooling saves.
KEEP_ALIVE_S = 60
# Stopping must not wait for calls hung on purpose (the `hang` fault).
GRACEFUL_SHUTDOWN_S = 1


class PortInUse(OSError):
    """The port asked for is taken; the message says which and what to do."""


def counting_protocol(stats: Stats) -> type[H11Protocol]:
    """An h11 protocol class that reports each TCP connection to `stats`."""

    class CountingH11Protocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            if self.client is not None:
                stats.connection_opened(self.client)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.client is not None:
                stats.connection_closed(self.client)
            super().connection_lost(exc)

    return CountingH11Protocol


class _QuietStreamCuts(logging.Filter):
    """Drop uvicorn's error log for the deliberate `cut` fault; keep real errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


def bind(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port (0: a free port the OS picks) or raise PortInUse."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
    # With proto 0, Nagle's algorithm meets the client's delayed ACK and every response that
    # is written in two parts (headers, then body) waits ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        # Lets a restarted mock take its old port while closed connections linger in
        # TIME_WAIT; it does not let two servers listen on one port.
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(2048)
    except OSError as error:
        sock.close()
        if error.errno in (errno.EADDRINUSE, errno.EACCES):
            why = "is already in use" if error.errno == errno.EADDRINUSE else "is not allowed"
            raise PortInUse(
                f"port {port} on {HOST} {why}; choose another with --port, "
                "or --port 0 to let the OS pick a free one",
            ) from None
        raise
    sock.set_inheritable(False)
    return sock


def serve(
    service: MockService,
    sock: socket.socket,
    on_ready: Callable[[str], None],
    parent_pid: int | None = None,
    log_level: str = "warning",
) -> None:
    """Serve on a bound socket until SIGINT/SIGTERM (or the parent process exits)."""
    logging.basicConfig(
        stream=sys.stderr, level=log_level.upper(), format="mock-llm %(levelname)s: %(message)s"
    )
    logging.getLogger("uvicorn.error").addFilter(_QuietStreamCuts())
    config = Config(
        MockLLMApp(service),
        http=counting_protocol(service.stats),
        lifespan="off",
        log_config=None,
        log_level=log_level,
        access_log=False,
        # scope["client"] must stay the TCP peer: it is how the app finds its connection.
        proxy_headers=False,
        server_header=False,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    server = Server(config)
    port = sock.getsockname()[1]
    asyncio.run(_run(server, sock, f"http://{HOST}:{port}/v1", on_ready, parent_pid))


async def _run(
    server: Server,
    sock: socket.socket,
    url: str,
    on_ready: Callable[[str], None],
    parent_pid: int | None,
) -> None:
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        on_ready(url)
    watchdog = asyncio.ensure_future(_watch_parent(server, parent_pid)) if parent_pid else None
    try:
        await serving
    finally:
        if watchdog is not None:
            watchdog.cancel()


async def _watch_parent(server: Server, parent_pid: int) -> None:
    """Stop when the process that started us is gone, so a killed kernel leaves no orphan."""
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent_pid:
            server.should_exit = True
            return


def run_server(
    service: MockService,
    port: int,
    on_ready: Callable[[str], None],
    **options: Any,
) -> None:
    """Bind and serve: what `labkit mock-llm` does."""
    serve(service, bind(port), on_ready, **options)
