"""`labkit services`: real Redis and PostgreSQL in user space, their URLs, their errors."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from labkit.services import SERVICES, apply_environment, down, environment, status, up
from labkit.services import postgres as postgres_module
from labkit.services.base import pid_alive, process_tree
from tests.conftest import require_service
from tests.services import WHAT, postgres_service, redis_service, services_state  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def require(*names: str) -> None:
    for name in names:
        require_service(name, SERVICES[name].installed(), WHAT[name])


def cli(*args: str, state: Path | str, env: dict[str, str] | None = None):
    """Run `labkit services ARGS` in a subprocess, as a user would."""
    full_env = {**os.environ, "LAB_STATE_DIR": str(state), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "labkit.services.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=ROOT,
        timeout=120,
    )


def recorded(state: Path) -> dict:
    path = state / "services.json"
    return json.loads(path.read_text()) if path.exists() else {}


def alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if pid_alive(pid)]


@pytest.mark.service("redis")
@pytest.mark.service("postgres")
def test_up_status_down_leaves_no_process_behind(tmp_path):
    require("redis", "postgres")
    state = tmp_path / "state"
    try:
        started = cli("up", state=state)
        assert started.returncode == 0, started.stderr
        assert "redis     started" in started.stdout
        assert "postgres  started" in started.stdout
        assert "LAB_CACHE_URL=redis://:" in started.stdout
        assert "LAB_DATABASE_URL=postgres://lab:" in started.stdout

        report = cli("status", state=state)
        assert report.returncode == 0, report.stdout + report.stderr
        assert "redis     answering" in report.stdout and "PONG" in report.stdout
        assert "postgres  answering" in report.stdout and "SELECT 1" in report.stdout
        assert ":***@" in report.stdout  # status masks the passwords

        first = recorded(state)
        pids = [first["redis"]["pid"], *process_tree(first["postgres"]["pid"])]
        assert len(pids) >= 3 and alive(pids) == pids

        # PostgreSQL refuses root: under root (CI) it runs as an unprivileged account.
        postmaster = psutil.Process(first["postgres"]["pid"])
        me = psutil.Process().username()
        assert postmaster.username() == ("nobody" if os.geteuid() == 0 else me)
        # Passwords live in files of mode 600, never on a command line `ps` shows.
        for pid in pids:
            cmdline = " ".join(psutil.Process(pid).cmdline())
            for service in ("redis", "postgres"):
                password = first[service]["url"].split(":")[2].split("@")[0]
                assert password not in cmdline
        assert (state / "services.json").stat().st_mode & 0o777 == 0o600

        again = cli("up", state=state)
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == 2
        second = recorded(state)
        for name in ("redis", "postgres"):
            assert second[name]["pid"] == first[name]["pid"]
            assert second[name]["url"] == first[name]["url"]

        stopped = cli("down", state=state)
        assert stopped.returncode == 0, stopped.stderr
        assert "redis     stopped" in stopped.stdout and "postgres  stopped" in stopped.stdout
        assert alive(pids) == [], "down left processes behind"
        assert recorded(state) == {}
        after = cli("status", state=state)
        assert after.returncode == 1
        assert "redis     stopped" in after.stdout and "postgres  stopped" in after.stdout
    finally:
        cli("down", "--purge", state=state)
    cluster = Path(first["postgres"]["extra"]["cluster"])
    assert not cluster.exists(), "down --purge left the PostgreSQL cluster"


@pytest.mark.service("redis")
def test_up_restarts_a_service_that_died(tmp_path):
    require("redis")
    try:
        [first] = up(["redis"], state=tmp_path)
        assert first.action == "started"
        os.kill(first.record.pid, signal.SIGKILL)
        assert _wait_dead(first.record.pid)
        [health] = status(["redis"], state=tmp_path)
        assert health.state == "stopped"
        [second] = up(["redis"], state=tmp_path)
        assert second.action == "started" and second.record.pid != first.record.pid
        assert second.record.port == first.record.port  # same URL again when the port is free
        [health] = status(["redis"], state=tmp_path)
        assert health.answering, health.detail
    finally:
        down(["redis"], state=tmp_path, purge=True)


def _wait_dead(pid: int) -> bool:
    from labkit.services.base import wait_gone

    return not wait_gone([pid], 5)


@pytest.mark.service("redis")
def test_status_tells_a_stuck_service_from_a_stopped_one(tmp_path):
    require("redis")
    try:
        [change] = up(["redis"], state=tmp_path)
        os.kill(change.record.pid, signal.SIGSTOP)
        try:
            [health] = status(["redis"], state=tmp_path)
        finally:
            os.kill(change.record.pid, signal.SIGCONT)
        assert health.state == "not answering"
        assert "no PONG" in health.detail
    finally:
        down(["redis"], state=tmp_path, purge=True)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.service(n)) for n in ("redis", "postgres")]
)
def test_a_port_in_use_is_a_clear_error(tmp_path, name):
    require(name)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("up", "--only", name, f"--{name}-port", str(port), state=tmp_path)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"--{name}-port" in result.stderr
    assert recorded(tmp_path) == {}
    cli("down", "--purge", state=tmp_path)


def test_a_missing_binary_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env = {"PATH": str(empty), "LAB_POSTGRES_BIN": str(empty)}
    redis = cli("up", "--only", "redis", state=tmp_path / "state", env=env)
    assert redis.returncode == 1
    assert "redis-server not found: apt install redis-server, or brew install redis" in (
        redis.stderr
    )
    pg = cli("up", "--only", "postgres", state=tmp_path / "state", env=env)
    assert pg.returncode == 1
    assert "PostgreSQL (initdb, pg_ctl) not found" in pg.stderr
    assert "apt install postgresql, or brew install postgresql" in pg.stderr
    # Without --only, what is not installed is skipped, not an error.
    both = cli("up", state=tmp_path / "state", env=env)
    assert both.returncode == 0, both.stderr
    assert "redis     skipped: redis-server not found" in both.stdout
    report = cli("status", "--only", "redis", state=tmp_path / "state", env=env)
    assert report.returncode == 1 and "not installed" in report.stdout


def test_postgres_search_finds_debian_versioned_folders(monkeypatch, tmp_path):
    for version in ("9.6", "15", "16"):
        folder = tmp_path / "lib" / version / "bin"
        folder.mkdir(parents=True)
        for program in ("initdb", "pg_ctl", "postgres"):
            (folder / program).write_text("#!/bin/sh\n")
            (folder / program).chmod(0o755)
    monkeypatch.delenv("LAB_POSTGRES_BIN", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    monkeypatch.setattr(postgres_module, "SEARCH_GLOBS", [str(tmp_path / "lib" / "*" / "bin")])
    assert postgres_module.find_bin_dir() == tmp_path / "lib" / "16" / "bin"


def test_an_unwritable_data_dir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("up", "--only", "redis", state=blocker / "state")
    assert result.returncode == 1
    assert "is not writable" in result.stderr and "LAB_STATE_DIR" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_state_dir_that_cannot_take_the_lock_is_a_clear_error(tmp_path):
    (tmp_path / "services.lock").mkdir()  # stands in for a folder we may not write to
    result = cli("up", "--only", "redis", state=tmp_path)
    assert result.returncode == 1
    assert "is not writable" in result.stderr and "LAB_STATE_DIR" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.service("redis")
@pytest.mark.service("postgres")
def test_environment_points_the_settings_at_running_services(
    services_state,  # noqa: F811
    redis_service,  # noqa: F811
    postgres_service,  # noqa: F811
    monkeypatch,
):
    found = environment(services_state)
    assert found == {
        "LAB_CACHE_URL": redis_service.url,
        "LAB_DATABASE_URL": postgres_service.url,
    }
    mine = {"LAB_DATABASE_URL": "postgres://me@db.example/mine"}
    applied = apply_environment(mine, state=services_state)
    assert applied == {"LAB_CACHE_URL": redis_service.url}  # what the user exported wins
    assert mine["LAB_DATABASE_URL"] == "postgres://me@db.example/mine"
    monkeypatch.setenv("LAB_USE_SERVICES", "0")
    assert environment(services_state) == {}


def test_environment_is_empty_when_nothing_runs(tmp_path):
    assert environment(tmp_path) == {}
    (tmp_path / "services.json").write_text(
        json.dumps(
            {
                "redis": {
                    "name": "redis",
                    "url": "redis://:x@127.0.0.1:1/0",
                    "port": 1,
                    "pid": 2**22 + 17,  # no such process
                    "data_dir": str(tmp_path),
                    "log": "",
                    "version": "",
                    "user": "",
                    "start_s": 0,
                }
            }
        )
    )
    assert environment(tmp_path) == {}


PROJECT_CHECK = textwrap.dedent(
    """
    import django
    django.setup()
    from django.conf import settings
    from django.core.cache import cache, caches
    from django.db import connection
    from labproject.ai.models import Chunk, Document

    print("vendor", connection.vendor)
    print("documents", Document.objects.count(), "chunks", Chunk.objects.count())
    print("pool", type(connection.pool).__name__, settings.DATABASES["default"]["CONN_MAX_AGE"])
    stats = connection.pool.get_stats()
    print("pool_requests", stats.get("requests_num", 0))
    cache.set("services-test", {"n": 42}, 60)
    print("cache", type(caches["default"]).__name__, cache.get("services-test"))
    """
)


@pytest.mark.service("redis")
@pytest.mark.service("postgres")
def test_the_project_migrates_seeds_and_queries_through_the_pool(
    tmp_path,
    postgres_service,  # noqa: F811
    redis_service,  # noqa: F811
):
    env = {
        **os.environ,
        "LAB_STATE_DIR": str(tmp_path),
        "LAB_DATABASE_URL": postgres_service.url,
        "LAB_CACHE_URL": redis_service.url,
        "DJANGO_SETTINGS_MODULE": "labproject.settings",
    }
    for command in (["migrate", "-v0"], ["seed", "-v0"]):
        done = subprocess.run(
            [sys.executable, "-m", "labproject", *command],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
    done = subprocess.run(
        [sys.executable, "-c", PROJECT_CHECK],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "vendor postgresql" in out
    assert "documents 40 chunks 800" in out
    assert "pool ConnectionPool 0" in out
    assert "pool_requests 0" not in out
    assert "cache RedisCache {'n': 42}" in out
    # The value really is in Redis, under Django's key prefix and version.
    import redis

    with redis.Redis.from_url(redis_service.url) as client:
        assert client.exists(":1:services-test") == 1
    # The lab role owns the tables (not the superuser), so learners' migrations just work.
    import psycopg

    with psycopg.connect(postgres_service.url) as conn:
        owner = conn.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'ai_document'"
        ).fetchone()
    assert owner == ("lab",)


def test_the_cli_module_imports_only_the_standard_library():
    code = (
        "import sys, labkit.services.cli, labkit.services\n"
        "heavy = {'psutil', 'psycopg', 'redis', 'django'} & set(sys.modules)\n"
        "print(sorted(heavy))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_every_option_has_help():
    import argparse

    from labkit.services import cli as services_cli

    parser = argparse.ArgumentParser()
    services_cli.add_arguments(parser)
    for action in parser._actions:
        assert action.help, f"{action.dest} has no help"
    args = parser.parse_args(["up", "--only", "redis", "--redis-port", "6390"])
    assert args.only == ["redis"] and args.redis_port == 6390
