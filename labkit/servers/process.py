"""gunicorn, uvicorn and Granian as subprocesses, for apps in modules (the Django project).

Workers are processes, so these servers can use both cores, unlike the in-kernel ones. Each
runs in its own process group with stdout and stderr going to a log file, is declared started
only once it answers HTTP, and is stopped by terminating the whole group.

    with UvicornProcess("labproject.asgi:application", workers=2) as server:
        print(server.url, server.pid)
"""

from __future__ import annotations

import atexit
import functools
import http.client
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import psutil

from labkit.servers.kernel import LOOPBACK, PortInUseError, bind_loopback

__all__ = [
    "GranianProcess",
    "GunicornProcess",
    "ServerProcessError",
    "UvicornProcess",
    "serve_granian",
    "serve_gunicorn",
    "serve_uvicorn",
    "stop_processes",
]


class ServerProcessError(RuntimeError):
    """A server process exited, crash-looped or never answered; the message holds its log."""


class _AddressInUse(Exception):
    """The process lost the race for its port (or the port was taken); try another."""


def free_port() -> int:
    """A port the OS considers free right now (it can be taken again before we use it)."""
    with bind_loopback(0, backlog=1) as sock:
        return sock.getsockname()[1]


class _ServerProcess:
    """Launch, health-check, log and stop one server process and everything it forks.

    `env` adds to (and overrides) this process's environment, e.g. PYTHONPATH or
    DJANGO_SETTINGS_MODULE; `cwd` is where the server runs and looks for the app's module.
    """

    program: ClassVar[str]
    workers: int
    # Log lines that mean a worker died while the server was starting. uvicorn restarts it
    # forever, so waiting for the health check would only end at the timeout.
    crash_patterns: ClassVar[tuple[str, ...]] = ()
    # gunicorn retries a busy port for 5 s before giving up; both say it in these words.
    address_in_use = re.compile(r"address already in use", re.IGNORECASE)
    # Attempts for port 0: the port picked can be grabbed by someone else before the
    # server binds it.
    port_attempts = 3

    def __init__(
        self,
        app: str,
        *,
        port: int,
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        health_path: str,
        startup_timeout: float,
        extra_args: Sequence[str],
    ) -> None:
        self.app = app
        self.requested_port = port
        self.env = dict(env or {})
        self.cwd = cwd
        self.health_path = health_path
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        self.port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._log_offset = 0
        self.log_path = _log_root() / f"{self.program}-{next(_SERIAL)}.log"

    def command(self, port: int) -> list[str]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def children(self) -> list[int]:
        """PIDs of every process the server forked: workers and helpers."""
        return [p.pid for p in self._children()]

    def worker_pids(self) -> list[int]:
        """PIDs of the processes that serve requests."""
        raise NotImplementedError

    def cpu_s(self) -> float:
        """CPU seconds (user + system) used so far by the server and every process it forked.

        Read it before and after a load run; the difference is the server's CPU for that run.
        """
        if not self.running:
            return 0.0
        assert self._proc is not None
        total = 0.0
        try:
            tree = [psutil.Process(self._proc.pid), *self._children()]
        except psutil.NoSuchProcess:
            return 0.0
        for process in tree:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue  # a worker that exited between the listing and the reading
            total += times.user + times.system
        return total

    def _children(self) -> list[psutil.Process]:
        if not self.running:
            return []
        assert self._proc is not None
        try:
            return psutil.Process(self._proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def logs(self, tail: int = 50) -> str:
        """The last `tail` lines of the server's stdout and stderr."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-tail:])

    def start(self) -> Self:
        """Launch the server and return once it answers HTTP on its health path."""
        if self.running:
            return self
        if self.requested_port:
            bind_loopback(self.requested_port, backlog=1).close()  # PortInUseError if taken
        attempts = 1 if self.requested_port else self.port_attempts
        for attempt in range(1, attempts + 1):
            self.port = self.requested_port or free_port()
            self._launch()
            try:
                self._wait_healthy()
            except _AddressInUse:
                self.stop(grace=1.0)
                if self.requested_port or attempt == attempts:
                    raise PortInUseError(self.port) from None
            except BaseException:
                self.stop(grace=1.0)  # it failed: no requests worth a graceful wait
                raise
            else:
                _STARTED.add(self)
                return self
        raise AssertionError("unreachable")

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the process group, wait, and kill whatever is left after `grace` s."""
        proc, self._proc = self._proc, None
        _STARTED.discard(self)
        if proc is None:
            return
        try:
            forked = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            forked = []
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5)
        # A worker that left the group or ignored SIGTERM must not outlive its server.
        _, alive = psutil.wait_procs(forked, timeout=grace)
        for child in alive:
            child.kill()
        psutil.wait_procs(alive, timeout=5)
        reaper, self._reaper = self._reaper, None
        if reaper is not None:  # it sees the group gone within its poll interval
            try:
                reaper.wait(5)
            except subprocess.TimeoutExpired:
                reaper.kill()
                reaper.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid} running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.app!r} {self.url} {state}>"

    def _launch(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        with self.log_path.open("ab") as log:
            # Only this launch's lines count when looking for crashes: the log is appended to
            # across restarts, and an earlier stop leaves "Worker ... was sent SIGTERM" behind.
            self._log_offset = log.tell()
            log.write(f"$ {' '.join(self.command(self.port))}\n".encode())
            log.flush()
            # A session of its own: stop() signals the server and all its workers at once,
            # and Ctrl-C / interrupting the kernel does not reach them by accident.
            self._proc = subprocess.Popen(
                self.command(self.port),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd,
                start_new_session=True,
            )
        # The reaper ends the group if this process dies without stop() (a killed kernel).
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "labkit.servers.reaper", str(os.getpid()), str(self._proc.pid)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def target(self) -> str:
        """What `start()` waits for, as its messages name it."""
        return f"a first answer to GET {self.url}{self.health_path}"

    def ready(self, log: str) -> bool:
        """Whether this launch (its log so far: `log`) is up and can take work."""
        # All workers up, not just the first: a load test must not start on half of them.
        return _answers_http(self.port, self.health_path) and (
            len(self.worker_pids()) >= self.workers
        )

    def _wait_healthy(self) -> None:
        assert self._proc is not None
        target = self.target
        deadline = time.monotonic() + self.startup_timeout
        while True:
            code = self._proc.poll()
            with self.log_path.open("rb") as file:
                file.seek(self._log_offset)
                log = file.read().decode(errors="replace")
            if code is not None:
                if self.address_in_use.search(log):
                    raise _AddressInUse
                self._fail(f"exited with code {code} before {target}.", log)
            if any(re.search(pattern, log, re.MULTILINE) for pattern in self.crash_patterns):
                log = self._log_with_cause(log)
                self._fail(
                    f"is up, but its workers die as they start, so {target} never comes.", log
                )
            if self.ready(log):
                return
            if time.monotonic() > deadline:
                self._fail(f"did not get to {target} within {self.startup_timeout:g} s.", log)
            time.sleep(0.1)

    def _log_with_cause(self, log: str, wait_s: float = 3.0) -> str:
        """The launch's log once its error line is written: a crashed worker's traceback is
        read while it is still being written (seen on a busy machine), its last line late."""
        deadline = time.monotonic() + wait_s
        while not _ERROR_LINE.search(log) and time.monotonic() < deadline:
            time.sleep(0.1)
            with self.log_path.open("rb") as file:
                file.seek(self._log_offset)
                log = file.read().decode(errors="replace")
        return log

    def _fail(self, what: str, log: str) -> None:
        """Raise the error for a failed start, naming the cause found in this launch's log."""
        tail = self.logs(tail=30)
        errors = _ERROR_LINE.findall(log)
        cause = f" Cause: {errors[-1]}." if errors else ""
        hint = next((hint for needle, hint in _HINTS.items() if needle in log), "")
        raise ServerProcessError(
            f"{self.program} ({self.app}) {what}{cause} {hint}\n"
            f"Last lines of {self.log_path}:\n{tail}"
        )


# What to do about the failures learners meet most, keyed by a phrase from the log; the
# first match wins, so the specific ones come first.
_ERROR_LINE = re.compile(r"^\w*(?:Error|Exception): .*$", re.MULTILINE)
_HINTS = {
    "No module named 'uvloop'": "Install uvloop (pip install 'uvicorn[standard]') or use "
    "loop='asyncio'.",
    "Failed to find attribute": "Check the 'module:attribute' app path.",
    "No module named": "Check that the app's module is importable: cwd= or PYTHONPATH in env=.",
}


class GunicornProcess(_ServerProcess):
    """gunicorn serving a WSGI app with `workers` processes of `threads` threads each.

    For example:

        with GunicornProcess("labproject.wsgi:application", workers=2) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    program = "gunicorn"
    crash_patterns = (r"Worker \(pid:\d+\) (?:exited with code|was sent)", r"Worker failed to boot")

    def __init__(
        self,
        wsgi_app: str = "labproject.wsgi:application",
        workers: int = 2,
        threads: int = 1,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        *,
        timeout: int = 60,
        health_path: str = "/healthz",
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            wsgi_app,
            port=port,
            env=env,
            cwd=cwd,
            health_path=health_path,
            startup_timeout=startup_timeout,
            extra_args=extra_args,
        )
        self.workers = workers
        self.threads = threads
        self.timeout = timeout

    def worker_pids(self) -> list[int]:
        return [p.pid for p in self._children() if p.ppid() == self.pid]

    def command(self, port: int) -> list[str]:
        # --timeout: gunicorn kills a sync worker silent that long, and a slow LLM call is
        # silent; --graceful-timeout keeps stop() within its grace period.
        return [
            sys.executable, "-m", "gunicorn", self.app,
            "--bind", f"{LOOPBACK}:{port}",
            "--workers", str(self.workers),
            "--threads", str(self.threads),
            "--backlog", "1024",
            "--timeout", str(self.timeout),
            "--graceful-timeout", "4",
            *self.extra_args,
        ]  # fmt: skip


class UvicornProcess(_ServerProcess):
    """uvicorn serving an ASGI app with `workers` processes.

    For example:

        with UvicornProcess("labproject.asgi:application", workers=2) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    program = "uvicorn"
    # The first line multiprocessing prints when a spawned worker dies, then the supervisor's.
    crash_patterns = (r"^Process SpawnProcess-\d+:$", r"Child process \[\d+\] died")

    def __init__(
        self,
        asgi_app: str = "labproject.asgi:application",
        workers: int = 1,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        loop: str = "asyncio",
        cwd: str | os.PathLike[str] | None = None,
        *,
        lifespan: str = "off",
        access_log: bool = False,
        health_path: str = "/healthz",
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            asgi_app,
            port=port,
            env=env,
            cwd=cwd,
            health_path=health_path,
            startup_timeout=startup_timeout,
            extra_args=extra_args,
        )
        self.workers = workers
        self.loop = loop
        self.lifespan = lifespan
        self.access_log = access_log

    def worker_pids(self) -> list[int]:
        if self.workers == 1:  # one worker: uvicorn serves in its main process
            return [self.pid] if self.running and self.pid is not None else []
        # Workers are started by multiprocessing's spawn, beside its resource tracker.
        return [p.pid for p in self._children() if "spawn_main" in " ".join(_cmdline(p))]

    def command(self, port: int) -> list[str]:
        # Access log off by default: a line per request to a file costs throughput that
        # gunicorn (whose access log is off by default) would not pay, skewing comparisons.
        return [
            sys.executable, "-m", "uvicorn", self.app,
            "--host", LOOPBACK,
            "--port", str(port),
            "--workers", str(self.workers),
            "--loop", self.loop,
            "--lifespan", self.lifespan,
            "--backlog", "1024",
            "--timeout-graceful-shutdown", "4",
            "--access-log" if self.access_log else "--no-access-log",
            *self.extra_args,
        ]  # fmt: skip


class GranianProcess(_ServerProcess):
    """Granian (a Rust HTTP server) serving an ASGI app with `workers` processes.

    Same interface as `UvicornProcess`, so the two can serve the same app in one scenario:

        with GranianProcess("labproject.asgi:application", workers=2) as server:
            urllib.request.urlopen(server.url + "/healthz")
    """

    program = "granian"
    # Without --respawn-failed-workers Granian exits when a worker dies, which start() sees.
    crash_patterns = (r"Unexpected exit from worker",)

    def __init__(
        self,
        asgi_app: str = "labproject.asgi:application",
        workers: int = 1,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        loop: str = "asyncio",
        cwd: str | os.PathLike[str] | None = None,
        *,
        access_log: bool = False,
        health_path: str = "/healthz",
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            asgi_app,
            port=port,
            env=env,
            cwd=cwd,
            health_path=health_path,
            startup_timeout=startup_timeout,
            extra_args=extra_args,
        )
        self.workers = workers
        self.loop = loop
        self.access_log = access_log

    def worker_pids(self) -> list[int]:
        # Granian always serves from worker processes, forked by its main process.
        return [p.pid for p in self._children() if p.ppid() == self.pid]

    def command(self, port: int) -> list[str]:
        # asginl: ASGI without lifespan, as uvicorn's --lifespan off (Django has none).
        return [
            sys.executable, "-m", "granian", self.app,
            "--interface", "asginl",
            "--host", LOOPBACK,
            "--port", str(port),
            "--workers", str(self.workers),
            "--loop", self.loop,
            "--no-ws",
            "--backlog", "1024",
            "--workers-kill-timeout", "4",
            "--access-log" if self.access_log else "--no-access-log",
            *self.extra_args,
        ]  # fmt: skip


_STARTED: set[_ServerProcess] = globals().get("_STARTED", set())
_SERIAL: Iterator[int] = globals().get("_SERIAL", itertools.count(1))
_NAMED: dict[str, _ServerProcess] = globals().get("_NAMED", {})
_LOCK: threading.Lock = globals().get("_LOCK", threading.Lock())


def serve_gunicorn(name: str = "gunicorn", **options: Any) -> GunicornProcess:
    """Start a `GunicornProcess` under `name`, stopping any earlier one of that name."""
    with _LOCK:
        _stop_named(name)
        server = _NAMED[name] = GunicornProcess(**options).start()
    return server


def serve_uvicorn(name: str = "uvicorn", **options: Any) -> UvicornProcess:
    """Start a `UvicornProcess` under `name`, stopping any earlier one of that name."""
    with _LOCK:
        _stop_named(name)
        server = _NAMED[name] = UvicornProcess(**options).start()
    return server


def serve_granian(name: str = "granian", **options: Any) -> GranianProcess:
    """Start a `GranianProcess` under `name`, stopping any earlier one of that name."""
    with _LOCK:
        _stop_named(name)
        server = _NAMED[name] = GranianProcess(**options).start()
    return server


def stop_processes() -> None:
    """Stop every server process this interpreter started and has not stopped."""
    with _LOCK:
        _NAMED.clear()
        for server in list(_STARTED):
            server.stop()


def _stop_named(name: str) -> None:
    server = _NAMED.pop(name, None)
    if server is not None:
        server.stop()


@functools.cache
def _log_root() -> Path:
    """One temp dir per interpreter for all server logs, removed when it exits."""
    return Path(tempfile.mkdtemp(prefix="labkit-servers-"))


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _answers_http(port: int, path: str) -> bool:
    """Whether anything answers HTTP there: any status, even 404 or 500, means alive."""
    # A short timeout: a server may accept a connection and answer late, or never.
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=1.0)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        return True
    except (TimeoutError, OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _at_exit() -> None:
    """Stop the servers (instead of leaving them as orphans holding ports), then drop logs."""
    stop_processes()
    if _log_root.cache_info().currsize:
        shutil.rmtree(_log_root(), ignore_errors=True)


if not globals().get("_ATEXIT_REGISTERED"):
    atexit.register(_at_exit)
    _ATEXIT_REGISTERED = True
