"""Start, stop and look up the lab's services; their URLs live in the state dir's services.json."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path

from labkit.services.base import (
    STOP_TIMEOUT_S,
    Health,
    MissingBinary,
    Running,
    ServiceError,
    accepts,
    choose_port,
    locked,
    pid_alive,
    wait_until,
    writable_dir,
)
from labkit.services.postgres import PostgresService
from labkit.services.redis import RedisService

SERVICES = {"redis": RedisService(), "postgres": PostgresService()}
RECORD_FILE = "services.json"
# Fixed ports, when wanted (e.g. to match a firewall rule); unset means "let the OS choose".
ENV_PORTS = {"redis": "LAB_REDIS_PORT", "postgres": "LAB_POSTGRES_PORT"}
# LAB_USE_SERVICES=0 keeps boot() on SQLite and LocMem even while services run.
ENV_USE = "LAB_USE_SERVICES"


@dataclass
class Change:
    """What `up` or `down` did to one service."""

    name: str
    action: str  # started | already running | stopped | not running | skipped | failed
    record: Running | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.action != "failed"


def resolve_state(state: Path | str | None = None, *, writable: bool = False) -> Path:
    """The state dir to keep service data in: `state`, else the lab's (LAB_STATE_DIR)."""
    try:
        if state is None:
            from labproject.state import state_dir

            path = state_dir()
        else:
            path = Path(state)
            path.mkdir(parents=True, exist_ok=True)
        if writable:
            writable_dir(path)
        return path
    except OSError as exc:
        where = state or os.environ.get("LAB_STATE_DIR") or "the state dir"
        raise ServiceError(
            f"data dir {where} is not writable: {exc.strerror or exc}; "
            "set LAB_STATE_DIR to a writable folder"
        ) from None


def records(state: Path | str | None = None) -> dict[str, Running]:
    """The services recorded in services.json (running or not: see `status`)."""
    path = resolve_state(state) / RECORD_FILE
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {name: Running.from_json(item) for name, item in data.items() if name in SERVICES}


def _save(state: Path, current: dict[str, Running]) -> None:
    path = state / RECORD_FILE
    tmp = path.with_suffix(".tmp")
    # Mode 600: the URLs carry the services' passwords.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({name: r.to_json() for name, r in sorted(current.items())}, f, indent=2)
    os.replace(tmp, path)


def _names(names: Iterable[str] | None) -> list[str]:
    chosen = list(SERVICES) if not names else list(dict.fromkeys(names))
    unknown = [name for name in chosen if name not in SERVICES]
    if unknown:
        raise ServiceError(f"unknown service {unknown[0]!r}: choose from {', '.join(SERVICES)}")
    return chosen


def up(
    names: Iterable[str] | None = None,
    *,
    state: Path | str | None = None,
    ports: dict[str, int] | None = None,
) -> list[Change]:
    """Start the services (all, or `names`) unless they already run; record their URLs.

    A service whose program is missing is skipped when no names were given, and fails when it
    was asked for by name. Ports: `ports[name]`, else $LAB_REDIS_PORT / $LAB_POSTGRES_PORT,
    else the port of the last run if free, else one the OS picks.

        changes = up(["redis"]); print(changes[0].record.url)
    """
    explicit = bool(names)
    chosen = _names(names)
    home = resolve_state(state, writable=True)
    changes = []
    with locked(home / "services.lock"):
        current = records(home)
        for name in chosen:
            wanted = (ports or {}).get(name) or int(os.environ.get(ENV_PORTS[name]) or 0)
            try:
                changes.append(_up_one(name, home, current, wanted))
            except MissingBinary as exc:
                changes.append(Change(name, "failed" if explicit else "skipped", error=str(exc)))
            except ServiceError as exc:
                changes.append(Change(name, "failed", error=str(exc)))
            _save(home, current)
    return changes


def _up_one(name: str, home: Path, current: dict[str, Running], wanted: int) -> Change:
    service = SERVICES[name]
    record = current.get(name)
    if record and service.owns(record):
        if wanted and wanted != record.port:
            raise ServiceError(
                f"{name} already runs on port {record.port}; stop it first "
                f"(labkit services down --only {name}) to move it to port {wanted}"
            )
        if not wait_until(lambda: _answers(name, record), 10, 0.2):
            raise ServiceError(
                f"{name} runs (pid {record.pid}) but does not answer; see {record.log}, "
                f"or restart it: labkit services down --only {name} && labkit services up"
            )
        return Change(name, "already running", record)
    port = choose_port(name, wanted, record.port if record else None)
    current.pop(name, None)
    running = service.start(home / name, port)
    current[name] = running
    return Change(name, "started", running)


def _answers(name: str, record: Running) -> bool:
    try:
        SERVICES[name].ping(record)
    except ServiceError:
        return False
    return True


def down(
    names: Iterable[str] | None = None,
    *,
    state: Path | str | None = None,
    purge: bool = False,
    timeout_s: float = STOP_TIMEOUT_S,
) -> list[Change]:
    """Stop the services (all, or `names`), waiting until their processes have exited.

    `purge=True` also deletes their data (the PostgreSQL cluster, Redis' folder).
    """
    chosen = _names(names)
    home = resolve_state(state, writable=True)
    changes = []
    with locked(home / "services.lock"):
        current = records(home)
        for name in chosen:
            service = SERVICES[name]
            record = current.get(name)
            try:
                if record and service.owns(record):
                    service.stop(record, timeout_s)
                    changes.append(Change(name, "stopped", record))
                else:
                    changes.append(Change(name, "not running", record))
                current.pop(name, None)
                if purge:
                    service.purge(home / name)
            except ServiceError as exc:
                changes.append(Change(name, "failed", record, str(exc)))
            _save(home, current)
    return changes


def status(names: Iterable[str] | None = None, *, state: Path | str | None = None) -> list[Health]:
    """Ask each service to answer: Redis PING, PostgreSQL `SELECT 1`."""
    found = records(state)
    report = []
    for name in _names(names):
        service = SERVICES[name]
        record = found.get(name)
        if record is None or not service.owns(record):
            if not service.installed():
                try:
                    service.find()
                except MissingBinary as exc:
                    report.append(Health(name, "not installed", str(exc)))
                    continue
            report.append(Health(name, "stopped", "not running", record))
            continue
        try:
            detail = service.ping(record)
        except ServiceError as exc:
            report.append(Health(name, "not answering", str(exc), record))
            continue
        report.append(Health(name, "answering", detail, record))
    return report


def environment(state: Path | str | None = None) -> dict[str, str]:
    """Environment variables that point the lab's settings at the services running now.

    Cheap enough to call on every boot: reads services.json, checks each pid and port.
    Empty when nothing runs, or when LAB_USE_SERVICES=0.

        environment()  # {'LAB_CACHE_URL': 'redis://:…@127.0.0.1:40123/0'}
    """
    if os.environ.get(ENV_USE, "1").lower() in {"0", "false", "no", "off"}:
        return {}
    try:
        found = records(state)
    except ServiceError:
        return {}
    return {
        SERVICES[name].env_var: record.url
        for name, record in found.items()
        if pid_alive(record.pid) and accepts(record.port)
    }


def apply_environment(
    environ: MutableMapping[str, str] | None = None, *, state: Path | str | None = None
) -> dict[str, str]:
    """Set the running services' variables in `environ` (os.environ) unless already set.

    Call before Django reads its settings; returns what it set. A URL the user exported
    always wins over a service the lab started.
    """
    target = os.environ if environ is None else environ
    applied = {}
    for key, value in environment(state).items():
        if key not in target:
            target[key] = value
            applied[key] = value
    return applied
