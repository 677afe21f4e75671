"""A Django Tasks worker as a subprocess: `python -m labproject db_worker` (django-tasks-db).

Django ships the Tasks API but no worker; the database backend's `db_worker` command is one.
It runs like the kit's server processes: its own process group, a log file, a reaper that ends
it if the kernel dies, and `stop()` that asks it to finish its current task first (SIGTERM).

    worker = serve_task_worker()            # returns once the worker polls the queue
    ...                                     # tasks enqueued now are run by it
    worker.stop()                           # finishes the task in hand, then exits
"""

from __future__ import annotations

import os
import re
import secrets
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from labkit.servers.process import _LOCK, _NAMED, _ServerProcess, _stop_named

__all__ = ["TaskWorkerProcess", "serve_task_worker"]

# What db_worker logs once it is polling (at verbosity 1).
_READY = re.compile(r"Starting worker worker_id=(\S+)")


class TaskWorkerProcess(_ServerProcess):
    """One `db_worker` process running the tasks of `queue`, one task at a time.

    `interval` is how long it sleeps when the queue is empty before looking again: the delay a
    task enqueued into an idle queue waits at most before it starts.
    """

    program = "db_worker"
    workers = 1
    crash_patterns = (r"^Traceback \(most recent call last\):$",)

    def __init__(
        self,
        *,
        queue: str = "default",
        interval: float = 0.05,
        worker_id: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        startup_timeout: float = 30.0,
        grace_s: float = 10.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        super().__init__(
            "labproject db_worker",
            port=0,
            env=env,
            cwd=cwd,
            health_path="",
            startup_timeout=startup_timeout,
            extra_args=extra_args,
        )
        self.queue = queue
        self.interval = interval
        self.worker_id = worker_id or f"lab-{secrets.token_hex(4)}"
        self.grace_s = grace_s

    def command(self, port: int) -> list[str]:
        # --no-reload: autoreload would fork a child outside our control; --no-startup-delay:
        # the random pause only spreads out a fleet of workers starting together.
        return [
            sys.executable, "-m", "labproject", "db_worker",
            "--queue-name", self.queue,
            "--interval", f"{self.interval:g}",
            "--worker-id", self.worker_id,
            "--no-reload",
            "--no-startup-delay",
            "--verbosity", "1",
            *self.extra_args,
        ]  # fmt: skip

    def worker_pids(self) -> list[int]:
        return [self.pid] if self.running and self.pid is not None else []

    def stop(self, grace: float | None = None) -> None:
        """Ask the worker to finish its current task and exit; kill it after the grace period."""
        super().stop(self.grace_s if grace is None else grace)

    @property
    def target(self) -> str:
        return f"a first poll of queue {self.queue!r}"

    def ready(self, log: str) -> bool:
        return _READY.search(log) is not None

    def __repr__(self) -> str:
        state = f"pid {self.pid} running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.worker_id} queue {self.queue!r} {state}>"


def serve_task_worker(name: str = "task-worker", **options: Any) -> TaskWorkerProcess:
    """Start a `TaskWorkerProcess` under `name`, stopping any earlier one of that name.

    worker = serve_task_worker(interval=0.05)
    """
    with _LOCK:
        _stop_named(name)
        worker = TaskWorkerProcess(**options).start()
        _NAMED[name] = worker
    return worker
