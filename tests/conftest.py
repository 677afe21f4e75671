"""Test-wide setup: a private state dir, Django configured, services required under CI."""

from __future__ import annotations

import os
import tempfile
from typing import Any

import pytest

# Before Django reads its settings: a state dir of the test run's own, never the user's.
os.environ["LAB_STATE_DIR"] = tempfile.mkdtemp(prefix="lab-test-state-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labproject.settings")
os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)

REQUIRE_SERVICES = os.environ.get("LAB_REQUIRE_SERVICES") == "1"


def require_service(name: str, available: bool, why: str) -> None:
    """Skip (laptop) or fail (CI) when a system service the test needs is missing."""
    if available:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{name} is required under LAB_REQUIRE_SERVICES=1 but {why}")
    pytest.skip(f"{name} not available: {why}")


@pytest.fixture(scope="session")
def django_db():
    """Django set up on a fresh SQLite file with the corpus seeded."""
    import django
    from django.core.management import call_command

    django.setup()
    from labkit.queries import install

    install()  # before the first connection, as boot() does
    call_command("migrate", verbosity=0, interactive=False)
    call_command("seed", verbosity=0)
    yield
    from django.db import connections

    connections.close_all()


@pytest.fixture(scope="session")
def mock_llm(django_db):
    """The kit's mock LLM, near-instant, with Django's settings pointed at it."""
    from django.conf import settings

    from labkit.mock_llm import MockLLM

    with MockLLM(preset="instant") as llm:
        previous = settings.LLM_BASE_URL
        settings.LLM_BASE_URL = llm.base_url
        yield llm
        settings.LLM_BASE_URL = previous


# Modules whose assertions compare throughput or timings (with wide margins): they run first,
# before the course's runs start loading both CPUs. `./run-tests` runs them as a phase of their
# own (`-m timing`), then the course's runs (`-m course`) beside the rest on xdist workers.
TIMING_MODULES = frozenset(
    {"test_bench", "test_mock_llm_throughput", "test_mock_llm_connections", "test_soak",
     "test_servers_kernel", "test_load_runner", "test_nesting", "test_no_loss"}
)  # fmt: skip
_course_wanted = False


def _group(item: Any) -> int:
    """0: timing-sensitive, 1: the rest, 2: waits for the course's runs."""
    if "course_runs" in getattr(item, "fixturenames", ()):
        return 2
    module = getattr(item, "module", None)
    return 0 if module is not None and module.__name__.rsplit(".", 1)[-1] in TIMING_MODULES else 1


def pytest_collection_modifyitems(session: pytest.Session, config: Any, items: list) -> None:
    """Mark and order: timing-sensitive tests first, on a quiet machine; then the course's
    long runs start in the background (see pytest_runtest_setup) while the rest runs; their
    own tests go last."""
    for item in items:
        group = _group(item)
        if group == 0:
            item.add_marker(pytest.mark.timing)
        elif group == 2:
            item.add_marker(pytest.mark.course)
    items.sort(key=_group)


def pytest_collection_finish(session: pytest.Session) -> None:
    global _course_wanted
    _course_wanted = not session.config.option.collectonly and any(
        _group(item) == 2 for item in session.items
    )


def pytest_runtest_setup(item: Any) -> None:
    if _course_wanted and _group(item) >= 1:
        from tests.course_runs import RUNS

        RUNS.start()  # once; later calls do nothing


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.course_runs import RUNS

    RUNS.stop()
