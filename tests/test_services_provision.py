"""`ensure_service`/`release_services`: a notebook section gets its service, or a fallback."""

from __future__ import annotations

import pytest

from labkit.services import (
    SERVICES,
    ServiceError,
    ensure_service,
    provision,
    release_services,
    status,
    up,
)
from labkit.services.base import pid_alive
from tests.conftest import require_service
from tests.services import WHAT


@pytest.fixture
def missing_redis(monkeypatch):
    monkeypatch.setattr(type(SERVICES["redis"]), "installed", lambda self: False)


def test_missing_service_falls_back_with_a_reason(missing_redis, monkeypatch, capsys):
    monkeypatch.delenv("LAB_REQUIRE_SERVICES", raising=False)
    assert ensure_service("redis") is None
    assert "redis is not installed on this machine" in capsys.readouterr().out


def test_missing_service_is_an_error_where_services_are_required(missing_redis, monkeypatch):
    monkeypatch.setenv("LAB_REQUIRE_SERVICES", "1")
    with pytest.raises(ServiceError, match="LAB_REQUIRE_SERVICES=1 requires it"):
        ensure_service("redis")


def test_unknown_service_is_named():
    with pytest.raises(ValueError, match="unknown service 'memcached'"):
        ensure_service("memcached")


@pytest.mark.service("redis")
def test_release_stops_only_what_ensure_started(tmp_path, monkeypatch):
    require_service("redis", SERVICES["redis"].installed(), WHAT["redis"])
    monkeypatch.setenv("LAB_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(provision, "_started", set())
    try:
        record = ensure_service("redis")
        assert record is not None and record.host == "127.0.0.1"
        assert ensure_service("redis").pid == record.pid  # already running: the same server
        assert [h.state for h in status(["redis"])] == ["answering"]
        assert release_services() == ["redis"]
        assert [h.state for h in status(["redis"])] == ["stopped"]
        assert release_services() == []
    finally:
        release_services()


@pytest.mark.service("redis")
def test_leftovers_of_a_finished_kernel_are_stopped(tmp_path):
    require_service("redis", SERVICES["redis"].installed(), WHAT["redis"])
    provision.stop_leftovers(tmp_path)  # nothing recorded: nothing to do
    [change] = up(["redis"], state=tmp_path)
    assert change.action == "started"
    provision.stop_leftovers(tmp_path)
    assert not pid_alive(change.record.pid)
