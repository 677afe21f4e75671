"""Subprocess servers: gunicorn, uvicorn and Granian with workers start, serve, stop completely."""

from __future__ import annotations

import http.client
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from labkit.servers import (
    GranianProcess,
    GunicornProcess,
    PortInUseError,
    ServerProcessError,
    UvicornProcess,
    serve_uvicorn,
    stop_processes,
)

TINY_APPS = """
import asyncio, os, time


def wsgi(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(os.getpid()).encode()})
"""


@pytest.fixture(scope="module")
def app_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """PYTHONPATH for a temp dir holding `tinyapps.wsgi` and `tinyapps.asgi`."""
    directory = tmp_path_factory.mktemp("apps")
    (directory / "tinyapps.py").write_text(TINY_APPS)
    return {"PYTHONPATH": str(directory)}


@pytest.fixture(autouse=True)
def stop_everything() -> Iterator[None]:
    yield
    stop_processes()


def get(url: str, path: str = "/") -> tuple[int, str]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def assert_gone(pids: list[int], timeout: float = 5.0) -> None:
    """Every PID has exited (a zombie awaiting its reaper counts as exited)."""
    deadline = time.monotonic() + timeout
    left = pids
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if _alive(pid)]
        time.sleep(0.05)
    assert left == [], f"processes still running after stop: {left}"


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_gunicorn_with_two_sync_workers_serves_and_stops(app_env: dict[str, str]) -> None:
    with GunicornProcess("tinyapps:wsgi", workers=2, env=app_env) as server:
        assert server.running and server.url.startswith("http://127.0.0.1:")
        workers = server.worker_pids()
        assert len(workers) == 2 and sorted(server.children()) == sorted(workers)
        # Four 0.3 s requests at once on two single-threaded workers: both have to serve.
        with ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda _: get(server.url, "/?0.3"), range(4)))
        assert {status for status, _ in replies} == {200}
        assert {int(body) for _, body in replies} == set(workers)
        assert "Booting worker" in server.logs()
        pids = [server.pid, *workers]

    assert not server.running and server.pid is None
    assert_gone(pids)


def test_uvicorn_with_two_workers_serves_and_stops(app_env: dict[str, str]) -> None:
    with UvicornProcess("tinyapps:asgi", workers=2, env=app_env) as server:
        status, body = get(server.url, "/healthz")
        workers = server.worker_pids()
        assert len(workers) == 2 and set(workers) <= set(server.children())
        assert status == 200 and int(body) in workers
        pids = [server.pid, *server.children()]

    assert_gone(pids)


@pytest.mark.parametrize("workers", [1, 2])
def test_granian_serves_the_same_asgi_app_from_its_workers_and_stops(
    app_env: dict[str, str], workers: int
) -> None:
    with GranianProcess("tinyapps:asgi", workers=workers, env=app_env) as server:
        workers_seen = server.worker_pids()
        assert len(workers_seen) == workers and server.pid not in workers_seen
        with ThreadPoolExecutor(8) as pool:
            replies = list(pool.map(lambda _: get(server.url, "/healthz"), range(8)))
        assert {status for status, _ in replies} == {200}
        assert {int(body) for _, body in replies} <= set(workers_seen)  # served by workers
        assert "--interface asginl" in server.logs()  # the command line, first in the log
        # Its CPU is the whole tree's: the main process (which imported Granian) and workers.
        main_cpu = sum(psutil.Process(server.pid).cpu_times()[:2])
        workers_cpu = sum(sum(psutil.Process(p).cpu_times()[:2]) for p in workers_seen)
        assert server.cpu_s() >= main_cpu + workers_cpu and main_cpu > 0
        pids = [server.pid, *server.children()]

    assert not server.running and server.cpu_s() == 0.0
    assert_gone(pids)


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_uvloop_without_uvloop_fails_fast_with_the_log(
    app_env: dict[str, str], workers: int
) -> None:
    server = UvicornProcess("tinyapps:asgi", workers=workers, env=app_env, loop="uvloop")
    started = time.monotonic()
    with pytest.raises(ServerProcessError) as caught:
        server.start()
    message = str(caught.value)

    assert time.monotonic() - started < 15
    assert "No module named 'uvloop'" in message
    assert "loop='asyncio'" in message  # says what to do
    assert f"Last lines of {server.log_path}" in message
    if workers == 2:
        assert "workers die as they start" in message
    else:
        assert "exited with code" in message
    assert not server.running
    # Every process the log mentions (parent, crashed and restarted workers) is gone.
    assert_gone([int(pid) for pid in re.findall(r"process \[(\d+)\]", server.logs(tail=1000))])


def test_gunicorn_with_an_unimportable_app_names_the_cause(app_env: dict[str, str]) -> None:
    with pytest.raises(ServerProcessError, match="No module named 'nosuchmodule'.*cwd="):
        GunicornProcess("nosuchmodule:app", workers=1, env=app_env).start()


@pytest.mark.parametrize(
    ("server_class", "app"),
    [
        (GunicornProcess, "tinyapps:wsgi"),
        (UvicornProcess, "tinyapps:asgi"),
        (GranianProcess, "tinyapps:asgi"),
    ],
)
def test_fixed_port_in_use_is_a_clear_error(
    app_env: dict[str, str],
    server_class: type[GunicornProcess | UvicornProcess | GranianProcess],
    app: str,
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(PortInUseError, match=f"Port {port} .*already in use"):
            server_class(app, port=port, env=app_env).start()
        assert time.monotonic() - started < 5  # not gunicorn's five 1 s retries


def test_serving_under_the_same_name_replaces_the_old_process(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    first = serve_uvicorn("api", asgi_app="tinyapps:asgi", env=app_env, cwd=tmp_path)
    first_pid = first.pid
    assert first_pid is not None
    second = serve_uvicorn("api", asgi_app="tinyapps:asgi", env=app_env, cwd=tmp_path)

    assert not first.running and second.running and second.pid != first_pid
    assert_gone([first_pid])
    assert get(second.url)[0] == 200


def test_the_notebooks_stop_all_also_stops_server_processes(
    app_env: dict[str, str], tmp_path: Path
) -> None:
    from labkit import stop_all

    server = serve_uvicorn("to-stop", asgi_app="tinyapps:asgi", env=app_env, cwd=tmp_path)
    pids = [server.pid, *server.children()]
    stop_all()
    assert not server.running
    assert_gone(pids)


KILLED_OWNER = """
import json, os, sys
sys.path.insert(0, os.environ["APPS"])
import labkit.servers
serve = getattr(labkit.servers, os.environ["SERVE"])
env = {"PYTHONPATH": os.environ["APPS"]}
server = serve("orphan", asgi_app="tinyapps:asgi", workers=2, env=env)
print(json.dumps([server.pid, *server.children()]), flush=True)
os.kill(os.getpid(), 9)  # a kernel killed mid-run: no stop(), no atexit
"""


@pytest.mark.parametrize("serve", ["serve_uvicorn", "serve_granian"])
def test_a_killed_owner_takes_its_server_processes_with_it(
    app_env: dict[str, str], serve: str
) -> None:
    import json
    import os
    import subprocess
    import sys

    owner = subprocess.run(
        [sys.executable, "-c", KILLED_OWNER],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "APPS": app_env["PYTHONPATH"], "SERVE": serve},
    )
    assert owner.returncode == -9, owner.stderr
    pids = json.loads(owner.stdout.splitlines()[-1])
    assert len(pids) >= 3  # the main process, its two workers (and multiprocessing helpers)
    assert_gone(pids, timeout=10)
