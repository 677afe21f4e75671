"""Byte relays between a TCP port on 127.0.0.1 and a Unix socket, in a thread of their own.

A grading sandbox has a network namespace of its own: its 127.0.0.1 is not the grader's. The
only way in or out is a Unix socket in a folder both can see. Relays carry TCP across:

    grader's mock (TCP)  <- Relay(listen=path)   ...socket...   Relay(connect=path) <- learner code
    checker, Locust      -> Relay(connect=path)  ...socket...   servant in the sandbox

A relay forwards bytes and knows nothing of HTTP. asyncio streams are used (not a library:
none of the well-kept proxies does TCP<->Unix in a few lines without a dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Any

LOOPBACK = "127.0.0.1"
CHUNK = 65536


class Relay:
    """Accept on a Unix socket `listen_path` or on a free loopback port; connect to the other.

    Give exactly one of `listen_path` (then `connect_port`) or `connect_path` (then a TCP
    listener on 127.0.0.1; `port` and `url` tell where).
    """

    def __init__(
        self,
        *,
        listen_path: str | None = None,
        connect_port: int | None = None,
        connect_path: str | None = None,
        name: str = "relay",
    ) -> None:
        if (listen_path is None) == (connect_path is None):
            raise ValueError("give listen_path (with connect_port) or connect_path")
        if listen_path is not None and connect_port is None:
            raise ValueError("a relay that listens on a Unix socket needs connect_port")
        self.listen_path = listen_path
        self.connect_port = connect_port
        self.connect_path = connect_path
        self.name = name
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> Relay:
        self._thread = threading.Thread(target=self._run, name=f"labkit-{self.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s) or self._error is not None:
            raise RuntimeError(f"the {self.name} relay did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop has stopped already
            loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if self.listen_path and os.path.exists(self.listen_path):
            with contextlib.suppress(OSError):
                os.unlink(self.listen_path)

    def __enter__(self) -> Relay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(_drain(tasks))
            if self._server is not None:
                loop.run_until_complete(self._server.wait_closed())
            loop.close()

    async def _listen(self) -> None:
        if self.listen_path is not None:
            if os.path.exists(self.listen_path):
                os.unlink(self.listen_path)
            self._server = await asyncio.start_unix_server(self._pipe, path=self.listen_path)
            os.chmod(self.listen_path, 0o777)  # the sandbox's user is not ours
        else:
            self._server = await asyncio.start_server(self._pipe, LOOPBACK, 0)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.connect_path is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.connect_path)
            else:
                up_reader, up_writer = await asyncio.open_connection(LOOPBACK, self.connect_port)
        except OSError:
            writer.close()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        except asyncio.CancelledError:
            pass  # the relay is stopping: both ends are closed below
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                with contextlib.suppress(Exception):
                    end.close()
                    await end.wait_closed()


async def _drain(tasks: set[asyncio.Task[Any]]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        # Half-close: the other direction may still be answering.
        with contextlib.suppress(Exception):
            if writer.can_write_eof():
                writer.write_eof()


def relay_to(path: str, **options: Any) -> Relay:
    """A started TCP listener on 127.0.0.1 that forwards to the Unix socket `path`."""
    return Relay(connect_path=path, **options).start()
