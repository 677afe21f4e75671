"""Redis in user space: a daemonized redis-server on loopback, for `LAB_CACHE_URL`."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from labkit.services.base import (
    HOST,
    START_TIMEOUT_S,
    MissingBinary,
    Running,
    ServiceError,
    current_account,
    log_tail,
    pid_alive,
    process_name,
    run,
    secret,
    terminate,
    wait_until,
    writable_dir,
)

INSTALL_HINT = "apt install redis-server, or brew install redis"
# A cache, not a store: no snapshots, no append-only file, and a memory cap so a runaway cell
# cannot take the 2 GB a Binder session has.
MAXMEMORY = "64mb"


class RedisService:
    name = "redis"
    env_var = "LAB_CACHE_URL"
    binary_name = "redis-server"

    def find(self) -> str:
        found = shutil.which(self.binary_name)
        if not found:
            raise MissingBinary(f"{self.binary_name} not found: {INSTALL_HINT}")
        return found

    def installed(self) -> bool:
        return shutil.which(self.binary_name) is not None

    def owns(self, record: Running) -> bool:
        """True when the recorded pid is still our redis-server (not a reused pid)."""
        return pid_alive(record.pid) and (process_name(record.pid) or "").startswith("redis")

    def start(self, home: Path, port: int) -> Running:
        binary = self.find()
        started = time.perf_counter()
        writable_dir(home)
        password = secret(home / "password")
        pidfile, logfile, conf = home / "redis.pid", home / "redis.log", home / "redis.conf"
        pidfile.unlink(missing_ok=True)
        _write_config(conf, port=port, home=home, pidfile=pidfile, logfile=logfile, pw=password)
        # daemonize: redis-server forks and returns, so no caller (a CLI, a kernel) keeps a
        # child to reap; the daemon's pid is read back from its pidfile.
        result = run([binary, str(conf)])
        if result.returncode != 0:
            raise ServiceError(
                f"redis-server did not start (exit {result.returncode}):\n"
                f"{(result.stderr or result.stdout).strip()}\n{log_tail(logfile)}"
            )
        url = f"redis://:{password}@{HOST}:{port}/0"

        def ready() -> bool:
            pid = _read_pid(pidfile)
            if pid is None and _died(logfile):
                raise ServiceError(
                    f"redis-server exited at start; its log says:\n{log_tail(logfile)}"
                )
            return pid is not None and _ping(url) is not None

        if not wait_until(ready, START_TIMEOUT_S):
            raise ServiceError(
                f"redis-server did not answer on {HOST}:{port} within {START_TIMEOUT_S:g} s; "
                f"its log ({logfile}) says:\n{log_tail(logfile)}"
            )
        pid = _read_pid(pidfile)
        assert pid is not None
        return Running(
            name=self.name,
            url=url,
            port=port,
            pid=pid,
            data_dir=str(home),
            log=str(logfile),
            version=self.version(binary),
            user=current_account().name,
            start_s=round(time.perf_counter() - started, 3),
        )

    def stop(self, record: Running, timeout_s: float) -> None:
        if self.owns(record):
            # SIGTERM: Redis shuts down cleanly (no snapshot to write, save is off).
            terminate([record.pid], timeout_s)

    def ping(self, record: Running) -> str:
        """Return how long PING took, or raise ServiceError."""
        took = _ping(record.url)
        if took is None:
            raise ServiceError(f"no PONG from {record.masked_url}")
        return f"PING → PONG in {took * 1000:.1f} ms"

    def version(self, binary: str) -> str:
        result = run([binary, "--version"], timeout_s=10)
        for word in result.stdout.split():
            if word.startswith("v="):
                return "Redis " + word[2:]
        return result.stdout.strip()

    def purge(self, home: Path) -> None:
        shutil.rmtree(home, ignore_errors=True)


def _write_config(conf: Path, *, port: int, home: Path, pidfile: Path, logfile: Path, pw: str):
    quote = json.dumps  # Redis reads C-style double-quoted strings, as JSON writes them
    lines = [
        f"bind {HOST}",
        f"port {port}",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {quote(str(pidfile))}",
        f"logfile {quote(str(logfile))}",
        f"dir {quote(str(home))}",
        'save ""',
        "appendonly no",
        f"maxmemory {MAXMEMORY}",
        "maxmemory-policy allkeys-lru",
        # A password, because on a shared JupyterHub host other users reach loopback too. It is
        # in this file (mode 600), not on the command line, where `ps` would show it.
        f"requirepass {pw}",
    ]
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")


def _read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _died(logfile: Path) -> bool:
    text = log_tail(logfile, 3)
    return any(word in text for word in ("aborting", "# Failed", "FATAL", "Fatal error"))


def _ping(url: str) -> float | None:
    import redis

    started = time.perf_counter()
    try:
        with redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2) as client:
            if client.ping():
                return time.perf_counter() - started
    except redis.RedisError:
        return None
    return None
