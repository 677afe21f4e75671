"""Fixtures for tests that need a real Redis or PostgreSQL, started by `labkit services`.

Import the fixtures into a test module to use them:

    from tests.services import postgres_service, redis_service  # noqa: F401 (fixtures)

    def test_cache(redis_service):
        os.environ["LAB_CACHE_URL"] = redis_service.url   # e.g. in a subprocess's env

Both run for the whole session on loopback with OS-chosen ports, in a state dir of their own
(never the test run's LAB_STATE_DIR, so boot() elsewhere keeps SQLite and LocMem). They skip
with a reason when the server is not installed, and fail instead under LAB_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.services import SERVICES, Running, down, up
from tests.conftest import require_service

WHAT = {
    "redis": "redis-server is not installed (apt install redis-server)",
    "postgres": "PostgreSQL's initdb/pg_ctl are not installed (apt install postgresql)",
}


@pytest.fixture(scope="session")
def services_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The state dir the session's services keep their data and services.json in."""
    return tmp_path_factory.mktemp("services-state")


def start_service(name: str, state: Path) -> Running:
    """Start one service for a test (or skip/fail when it is not installed)."""
    require_service(name, SERVICES[name].installed(), WHAT[name])
    [change] = up([name], state=state)
    if not change.ok or change.record is None:
        pytest.fail(f"labkit services could not start {name}: {change.error}")
    return change.record


@pytest.fixture(scope="session")
def redis_service(services_state: Path) -> Iterator[Running]:
    """A real Redis on 127.0.0.1; `.url` is a LAB_CACHE_URL."""
    record = start_service("redis", services_state)
    yield record
    down(["redis"], state=services_state, purge=True)


@pytest.fixture(scope="session")
def postgres_service(services_state: Path) -> Iterator[Running]:
    """A real PostgreSQL on 127.0.0.1 with database and role `lab`; `.url` is a
    LAB_DATABASE_URL (the role may create databases, so Django's test runner works too)."""
    record = start_service("postgres", services_state)
    yield record
    down(["postgres"], state=services_state, purge=True)
