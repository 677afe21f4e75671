"""User-space Redis and PostgreSQL for the lab, on loopback, with data in the state dir.

    from labkit.services import up, status, down, environment
    up()              # start what is installed; URLs go to <state dir>/services.json
    environment()     # {'LAB_CACHE_URL': 'redis://…', 'LAB_DATABASE_URL': 'postgres://…'}
    down()            # stop them and wait until their processes are gone
    ensure_service("redis")  # one service for a notebook section, or None and why

`boot()` calls `apply_environment()` before Django reads its settings, so a running service
is used without exporting anything. The command line is `labkit services up|down|status|env`.
"""

from __future__ import annotations

from labkit.services.base import Health, MissingBinary, PortInUse, Running, ServiceError
from labkit.services.provision import ensure_service, release_services
from labkit.services.registry import (
    SERVICES,
    Change,
    apply_environment,
    down,
    environment,
    records,
    status,
    up,
)

__all__ = [
    "SERVICES",
    "Change",
    "Health",
    "MissingBinary",
    "PortInUse",
    "Running",
    "ServiceError",
    "apply_environment",
    "down",
    "ensure_service",
    "environment",
    "records",
    "release_services",
    "status",
    "up",
]
