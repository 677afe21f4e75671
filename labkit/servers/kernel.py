"""Servers that run inside the notebook kernel, for views defined in cells.

The kernel runs cells inside an asyncio loop on the main thread, so every server here lives in
background threads and `start()` returns as soon as the socket accepts connections. Re-running
a cell must just work: `serve_wsgi` / `serve_asgi` keep servers by name and stop the previous
one of that name first, so three runs of a cell leave one server, one port and no stray thread.

    before = serve_wsgi(sync_app, name="before", threads=4)
    For example:

        after = serve_asgi(async_app, name="after")
"""

from __future__ import annotations

import atexit
import errno
import queue
import socket
import sys
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from wsgiref import simple_server

from labkit.servers.timing import RequestTiming, TimingRecorder

if TYPE_CHECKING:
    from wsgiref.types import WSGIApplication

    import uvicorn

__all__ = [
    "ASGIServer",
    "PortInUseError",
    "ServerStopWarning",
    "WSGIServer",
    "bind_loopback",
    "running_servers",
    "serve_asgi",
    "serve_wsgi",
    "stop_all",
    "stop_server",
]

ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]

_Queue = queue.SimpleQueue[tuple[Any, Any, float] | None]

LOOPBACK = "127.0.0.1"
# 200 clients of a load test connect within milliseconds; the kernel's default backlog (128
# on many systems) would refuse some of them, which looks like a server bug, not queueing.
BACKLOG = 1024


class PortInUseError(OSError):
    """A fixed port was asked for, and something else already listens there."""

    def __init__(self, port: int, holder: str | None = None) -> None:
        who = f"labkit server {holder}" if holder else "another process"
        super().__init__(
            errno.EADDRINUSE,
            f"Port {port} on {LOOPBACK} is already in use by {who}. Stop that server, "
            "choose another port, or pass port=0 to let the OS pick a free one.",
        )
        self.port = port


class ServerStopWarning(RuntimeWarning):
    """A server's threads did not finish within the stop timeout."""


def bind_loopback(port: int = 0, backlog: int = BACKLOG) -> socket.socket:
    """Bind and listen on 127.0.0.1:`port` (0: a free port from the OS)."""
    # IPPROTO_TCP, not the default 0: asyncio only turns Nagle off (TCP_NODELAY) on sockets
    # whose proto says TCP, and with Nagle on every keep-alive response waited ~40 ms.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # Lets a restarted server take back its fixed port while old connections sit in TIME_WAIT;
    # on Linux it still refuses a port that another socket is listening on.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((LOOPBACK, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(port, _holder_of(port)) from None
        raise
    return sock


class _KernelServer:
    """What both in-kernel servers share: name, URL, timings, stats, context manager."""

    kind = "server"

    def __init__(self, port: int, name: str | None, threads: int) -> None:
        self.name = name or self.kind
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._recorder = TimingRecorder(threads)

    @property
    def port(self) -> int:
        if self._sock is None:
            raise RuntimeError(f"{self!r} has no port yet: call .start() first.")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        raise NotImplementedError

    @property
    def timings(self) -> list[RequestTiming]:
        return self._recorder.timings

    def clear_timings(self) -> None:
        self._recorder.clear()

    def stats(self) -> dict[str, int]:
        return self._recorder.stats(with_queue=False)

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 5.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._sock is not None else "not started"
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.name!r} {where} {state}>"

    def _open_socket(self) -> None:
        self._sock = bind_loopback(self._requested_port)
        self._port: int = self._sock.getsockname()[1]

    def _warn_alive(self, threads: list[threading.Thread], timeout: float) -> None:
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            warnings.warn(
                f"{self!r} closed its socket, but {len(alive)} thread(s) were still running a "
                f"request after {timeout:g} s ({', '.join(alive)}). They exit when their "
                "request returns; a view blocked forever keeps its thread.",
                ServerStopWarning,
                stacklevel=3,
            )


class _ServerHandler(simple_server.ServerHandler):
    """The stdlib's handler, reporting each status line (the app's or its own 500)."""

    on_status: Callable[[str], None]

    def start_response(self, status: str, headers: Any, exc_info: Any = None) -> Any:
        self.on_status(status)
        return super().start_response(status, headers, exc_info)


class _Handler(simple_server.WSGIRequestHandler):
    # A client that connects and never sends must not hold one of the N workers forever.
    timeout = 30
    server: _PooledServer

    def handle(self) -> None:
        """Handle one request, as the stdlib does, but telling the app it runs multithreaded."""
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = self.request_version = self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        handler = _ServerHandler(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        handler.request_handler = self  # type: ignore[attr-defined]
        handler.on_status = self.server.on_status
        handler.run(self.server.get_app())

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request would flood a notebook cell during a load test.
        pass


class _PooledServer(simple_server.WSGIServer):
    """The stdlib WSGI server, fed a pre-bound socket and handing requests to a queue."""

    request_queue_size = BACKLOG

    def __init__(
        self,
        sock: socket.socket,
        enqueue: Callable[[Any, Any], None],
        on_status: Callable[[str], None],
    ) -> None:
        super().__init__(sock.getsockname(), _Handler, bind_and_activate=False)
        # TCPServer made a socket of its own; swap in ours, which is already listening.
        self.socket.close()
        self.socket = sock
        self.server_name = LOOPBACK
        self.server_port = sock.getsockname()[1]
        # HTTPServer.server_bind would also reverse-resolve the host (seconds on a bad DNS).
        self.setup_environ()
        self._enqueue = enqueue
        self.on_status = on_status

    def process_request(self, request: Any, client_address: Any) -> None:
        self._enqueue(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Load-test clients that give up mid-response are normal, not tracebacks.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Slot:
    """What a worker learns about the request it is serving, for its timing record."""

    __slots__ = ("accepted_at", "started_at", "path", "method", "status", "responded")

    def __init__(self, accepted_at: float) -> None:
        self.accepted_at = accepted_at
        self.started_at: float | None = None
        self.path = self.method = ""
        self.status = 0  # no status line sent: the client gave up or the request was bad
        self.responded = False


class WSGIServer(_KernelServer):
    """Serve a WSGI app from exactly `threads` worker threads; extra requests queue.

    Built on the stdlib's `wsgiref` (the base of Django's runserver) rather than gunicorn or
    waitress: gunicorn cannot run inside a kernel thread, waitress is not installed, and a
    fixed pool fed by one accepting thread gives what the lesson needs to show — exactly N
    requests running, the rest visibly waiting with their acceptance time recorded.

        with WSGIServer(app, threads=4) as server:
            urllib.request.urlopen(server.url + "/ask")
    """

    kind = "wsgi"

    def __init__(
        self, app: WSGIApplication, threads: int = 4, port: int = 0, *, name: str | None = None
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads={threads}: a WSGI server needs at least one worker.")
        super().__init__(port, name, threads)
        self.app = app
        self.threads = threads
        self._server: _PooledServer | None = None
        self._queue: _Queue = queue.SimpleQueue()
        self._local = threading.local()
        self._threads: list[threading.Thread] = []

    @property
    def running(self) -> bool:
        return self._server is not None and all(t.is_alive() for t in self._threads)

    def stats(self) -> dict[str, int]:
        return self._recorder.stats(with_queue=True)

    def start(self) -> Self:
        """Bind the socket and start the acceptor and workers; return once connectable."""
        if self.running:
            return self
        self._open_socket()
        assert self._sock is not None
        # A fresh queue per start: a worker of an earlier run still finishing a slow request
        # must not pick up this run's requests (or its stop signals).
        self._queue = work = queue.SimpleQueue()
        self._server = server = _PooledServer(self._sock, self._enqueue, self._on_status)
        server.set_app(self._timed_app)
        prefix = f"labkit-wsgi[{self.name}]"
        self._threads = [
            threading.Thread(
                target=self._work, args=(server, work), name=f"{prefix}-worker-{i + 1}", daemon=True
            )
            for i in range(self.threads)
        ]
        # A short poll interval keeps stop() quick; the acceptor is idle otherwise.
        acceptor = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"{prefix}-accept", daemon=True
        )
        self._threads.append(acceptor)
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close the socket, drop queued requests, join every thread."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        while True:  # requests still queued will never be served: close them now
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                server.shutdown_request(item[0])
                self._recorder.dequeued()
        for _ in range(self.threads):
            self._queue.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._warn_alive(self._threads, timeout)

    def _enqueue(self, request: Any, client_address: Any) -> None:
        self._queue.put((request, client_address, self._recorder.queued()))

    def _work(self, server: _PooledServer, work: _Queue) -> None:
        while (item := work.get()) is not None:
            request, client_address, accepted_at = item
            slot = self._local.slot = _Slot(accepted_at)
            try:
                server.finish_request(request, client_address)
            except Exception:
                server.handle_error(request, client_address)
            finally:
                server.shutdown_request(request)
                self._record(slot)

    def _record(self, slot: _Slot) -> None:
        if slot.started_at is None:  # bad request line or client gone: the app never ran
            self._recorder.dequeued()
            return
        timing = RequestTiming(
            path=slot.path,
            method=slot.method,
            status=slot.status,
            accepted_at=slot.accepted_at,
            started_at=slot.started_at,
            finished_at=time.perf_counter(),
            thread=threading.current_thread().name,
        )
        self._recorder.finished(timing, responded=slot.responded)

    def _timed_app(self, environ: dict[str, Any], start_response: Any) -> Any:
        slot: _Slot = self._local.slot
        slot.started_at = self._recorder.started(was_queued=True)
        slot.path = environ.get("PATH_INFO", "")
        slot.method = environ.get("REQUEST_METHOD", "")
        return self.app(environ, start_response)

    def _on_status(self, status: str) -> None:
        slot: _Slot = self._local.slot
        slot.status = int(status[:3])
        if not slot.responded:
            slot.responded = True
            self._recorder.responding()


class ASGIServer(_KernelServer):
    """Serve an ASGI 3 app with uvicorn on its own event loop in a background thread.

    Options are passed to `uvicorn.Config`; the in-kernel server is one process by design
    (use `UvicornProcess` for workers).

        with ASGIServer(app) as server:
            urllib.request.urlopen(server.url + "/ask")
    """

    kind = "asgi"
    # lifespan off: Django's ASGI handler does not speak it. asgi3: uvicorn cannot tell that
    # the bound-method wrapper below is ASGI 3 (it wraps `app`, which must be ASGI 3 too, as
    # Django's is). No log config: uvicorn's default one would rewrite the kernel's logging
    # setup at every start. The graceful timeout bounds stop() when a view is stuck upstream.
    defaults: dict[str, Any] = {
        "lifespan": "off",
        "interface": "asgi3",
        "log_config": None,
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 3,
    }

    def __init__(
        self, app: ASGIApp, port: int = 0, *, name: str | None = None, **uvicorn_options: Any
    ) -> None:
        for fixed in ("host", "port", "fd", "uds", "workers", "reload"):
            if fixed in uvicorn_options:
                raise TypeError(
                    f"ASGIServer sets uvicorn's {fixed!r} itself; use UvicornProcess for "
                    "workers or reload, and port= for the port."
                )
        super().__init__(port, name, threads=1)
        self.app = app
        self.options = {**self.defaults, **uvicorn_options}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def running(self) -> bool:
        return (
            self._server is not None
            and self._server.started
            and not self._server.should_exit
            and self._thread is not None
            and self._thread.is_alive()
        )

    def start(self, timeout: float = 10.0) -> Self:
        """Start uvicorn in a thread; return once it accepts connections."""
        import uvicorn  # deferred: importing the servers must stay cheap for the kernel

        if self.running:
            return self
        self._open_socket()
        assert self._sock is not None
        config = uvicorn.Config(self._timed_app, host=LOOPBACK, port=self._port, **self.options)
        try:
            # Here rather than in the thread: uvicorn builds its coroutine before the loop, so
            # a missing loop there (uvloop) also leaves a "never awaited" warning behind.
            config.get_loop_factory()
        except Exception as exc:
            self._sock.close()
            raise RuntimeError(
                f"uvicorn could not start serving {LOOPBACK}:{self._port}, failed: {exc!r}. "
                f"Check the options {self.options}; loop='asyncio' needs nothing installed."
            ) from exc
        self._server = uvicorn.Server(config)
        self._error = None
        self._thread = threading.Thread(
            target=self._run, name=f"labkit-asgi[{self.name}]", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(timeout=1.0)
                what = f"failed: {self._error!r}" if self._error else f"timed out ({timeout:g} s)"
                raise RuntimeError(
                    f"uvicorn could not start serving {LOOPBACK}:{self._port}, {what}. If "
                    "nest_asyncio was applied in this kernel, restart the kernel without it."
                ) from self._error
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit, force it after `timeout`, close the socket, join the thread."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(1.0)
        if self._sock is not None:
            self._sock.close()  # uvicorn closes it too; closing twice is harmless
        self._server = None
        self._warn_alive([thread], timeout)

    def _run(self) -> None:
        assert self._server is not None and self._sock is not None
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: B036 - uvicorn reports startup failure by SystemExit
            self._error = exc

    async def _timed_app(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # uvicorn runs each request as soon as it is parsed, so accepted and started coincide.
        started_at = self._recorder.started(was_queued=False)
        status = 500  # what uvicorn sends when the app raises before starting a response
        responded = False

        async def timed_send(message: Any) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start" and not responded:
                status, responded = message["status"], True
                self._recorder.responding()
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            self._recorder.finished(
                RequestTiming(
                    path=scope.get("path", ""),
                    method=scope.get("method", ""),
                    status=status,
                    accepted_at=started_at,
                    started_at=started_at,
                    finished_at=time.perf_counter(),
                    thread=threading.current_thread().name,
                ),
                responded=responded,
            )


# Kept in the module's globals across importlib.reload / autoreload, so a reloaded module
# still knows (and can stop) the servers started before the reload.
_SERVERS: dict[str, _KernelServer] = globals().get("_SERVERS", {})
_LOCK: threading.Lock = globals().get("_LOCK", threading.Lock())


def serve_wsgi(
    app: WSGIApplication, *, name: str = "wsgi", threads: int = 4, port: int = 0
) -> WSGIServer:
    """Start a `threads`-worker WSGI server named `name`, replacing any earlier one.

    For example:

        before = serve_wsgi(slow_view_app, name="before", threads=4)
    """
    with _LOCK:
        _stop_locked(name)
        server = WSGIServer(app, threads=threads, port=port, name=name).start()
        _SERVERS[name] = server
    return server


def serve_asgi(
    app: ASGIApp, *, name: str = "asgi", port: int = 0, **uvicorn_options: Any
) -> ASGIServer:
    """Start uvicorn in a thread under `name`, replacing any earlier server of that name.

    For example:

        after = serve_asgi(async_app, name="after")
    """
    with _LOCK:
        _stop_locked(name)
        server = ASGIServer(app, port=port, name=name, **uvicorn_options).start()
        _SERVERS[name] = server
    return server


def stop_server(name: str) -> bool:
    """Stop the server registered under `name`; return whether there was one."""
    with _LOCK:
        return _stop_locked(name)


def stop_all() -> None:
    """Stop every server started through `serve_wsgi` / `serve_asgi`."""
    with _LOCK:
        for name in list(_SERVERS):
            _stop_locked(name)


def running_servers() -> dict[str, WSGIServer | ASGIServer]:
    """The registered servers that are still running, by name."""
    with _LOCK:
        return {n: s for n, s in _SERVERS.items() if s.running}  # type: ignore[misc]


def _stop_locked(name: str) -> bool:
    server = _SERVERS.pop(name, None)
    if server is None:
        return False
    server.stop()
    return True


def _holder_of(port: int) -> str | None:
    for server in list(_SERVERS.values()):
        if server._sock is not None and server.running and server._port == port:
            return f"{server.name!r} ({type(server).__name__})"
    return None


if not globals().get("_ATEXIT_REGISTERED"):
    atexit.register(stop_all)
    _ATEXIT_REGISTERED = True
