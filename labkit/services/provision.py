"""One service for a notebook section: running if it can be, or a plain reason why not.

Notebooks 04–06 show PostgreSQL and Redis when this machine has them, and fall back to SQLite
and LocMem (saying so) when it does not. Under `LAB_REQUIRE_SERVICES=1` (CI) a fallback would
hide a missing prerequisite, so it raises instead.

    redis = ensure_service("redis")  # a Running record, or None with the reason printed
    if redis: CACHES["shared"] = {..., "LOCATION": redis.url}
    ...
    release_services()  # last cell: stop what ensure_service() started, nothing else

A service left running would change the next kernel's `boot()` (it uses running services), so
a notebook gives back what it started; one the user started with `labkit services up` stays.
"""

from __future__ import annotations

import os
from pathlib import Path

from labkit.services.base import Running, ServiceError
from labkit.services.registry import RECORD_FILE, SERVICES, down, up

ENV_REQUIRE = "LAB_REQUIRE_SERVICES"
_started: set[str] = set()


def ensure_service(name: str) -> Running | None:
    """Start `name` (redis or postgres) unless it runs; None, with the reason, if it can't."""
    if name not in SERVICES:
        raise ValueError(f"unknown service {name!r}; the lab knows {sorted(SERVICES)}")
    if not SERVICES[name].installed():
        return _fallback(name, f"{name} is not installed on this machine")
    (change,) = up([name])
    if not change.ok or change.record is None:
        return _fallback(name, f"{name} did not start: {change.error}")
    if change.action == "started":
        _started.add(name)
    return change.record


def release_services() -> list[str]:
    """Stop the services that `ensure_service` started in this process; return their names."""
    names = sorted(_started)
    if names:
        down(names)
        _started.clear()
    return names


def _fallback(name: str, why: str) -> None:
    if os.environ.get(ENV_REQUIRE) == "1":
        raise ServiceError(f"{why}, and {ENV_REQUIRE}=1 requires it.")
    print(f"{why}: this section falls back to the lab's defaults and says where it differs.")
    return None


def stop_leftovers(state: Path) -> None:
    """Stop services a finished kernel left running under `state` (the grader's temp dirs).

    A notebook that fails before its last cell never calls `release_services()`; its Redis or
    PostgreSQL must not outlive the temp dir they keep their data in.
    """
    if (state / RECORD_FILE).exists():
        down(state=state)
