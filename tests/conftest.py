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


def pytest_collection_modifyitems(session: pytest.Session, config: Any, items: list) -> None:
    """The course's runs go last: the rest of the suite runs while they work in the background."""
    items.sort(key=lambda item: "course_runs" in getattr(item, "fixturenames", ()))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the course's long runs now if selected: they overlap with the other tests."""
    if session.config.option.collectonly:
        return
    if any("course_runs" in getattr(item, "fixturenames", ()) for item in session.items):
        from tests.course_runs import RUNS

        RUNS.start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    from tests.course_runs import RUNS

    RUNS.stop()
