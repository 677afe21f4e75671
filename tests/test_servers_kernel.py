"""In-kernel servers: a 4-thread WSGI server queues, uvicorn overlaps, restarts leave nothing."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from labkit.servers import (
    ASGIServer,
    PortInUseError,
    ServerStopWarning,
    WSGIServer,
    running_servers,
    serve_asgi,
    serve_wsgi,
    stop_all,
    stop_server,
)
from labkit.timeline import overlap

DELAY_S = 0.5


def sleepy_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    time.sleep(float(environ.get("QUERY_STRING") or DELAY_S))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done"]


async def sleepy_asgi(scope: Any, receive: Any, send: Any) -> None:
    await asyncio.sleep(float(scope.get("query_string") or DELAY_S))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done"})


def instant_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def instant_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def get(port: int, path: str = "/", timeout: float = 15.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def get_all(port: int, n: int, query: str = "") -> tuple[list[int], float]:
    """Send `n` requests at once; return their statuses and the wall time for all of them."""
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(lambda i: get(port, f"/r{i}{query}"), range(n)))
    return statuses, time.perf_counter() - started


def lab_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("labkit-"))


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    stop_all()
    assert lab_threads() == []


def test_wsgi_runs_exactly_n_requests_and_queues_the_rest() -> None:
    with WSGIServer(sleepy_wsgi, threads=4) as server:
        statuses, elapsed = get_all(server.port, 12)
        stats, timings = server.stats(), server.timings

    assert statuses == [200] * 12
    # 12 requests on 4 threads is 3 rounds of 0.5 s; a thread per request would take 1 round.
    assert 2.8 * DELAY_S < elapsed < 7 * DELAY_S, f"12 requests took {elapsed:.2f} s"
    assert stats["in_progress_peak"] == 4
    assert stats["queued_peak"] >= 4
    assert stats["requests"] == 12 and stats["in_progress"] == 0 and stats["threads"] == 4
    assert overlap(timings) == 4
    waits = sorted(t.waiting_s for t in timings)
    assert all(w < 0.5 * DELAY_S for w in waits[:4]), waits  # the first round starts at once
    assert all(w > 0.6 * DELAY_S for w in waits[4:]), waits  # the rest queued
    assert {t.thread for t in timings} <= {f"labkit-wsgi[wsgi]-worker-{i}" for i in range(1, 5)}


def test_asgi_serves_concurrent_requests_at_once() -> None:
    with ASGIServer(sleepy_asgi) as server:
        assert get(server.port, "/warm-up?0") == 200
        server.clear_timings()
        statuses, elapsed = get_all(server.port, 20)
        stats, timings = server.stats(), server.timings

    assert statuses == [200] * 20
    assert elapsed < 2 * DELAY_S, f"20 overlapping 0.5 s requests took {elapsed:.2f} s"
    assert stats["in_progress_peak"] >= 15
    assert overlap(timings) >= 15
    assert len(timings) == 20 and all(t.waiting_s == 0 for t in timings)


def test_wsgi_answers_200_clients_connecting_at_once() -> None:
    with WSGIServer(instant_wsgi, threads=4) as server:
        statuses, _ = get_all(server.port, 200)
        assert server.stats()["requests"] == 200

    assert statuses == [200] * 200


def test_timings_record_path_status_and_order() -> None:
    def broken(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("a view that fails")

    with WSGIServer(broken, threads=1) as server:
        assert get(server.port, "/boom") == 500
        (timing,) = server.timings
        server.clear_timings()
        assert server.timings == [] and server.stats()["requests"] == 0

    assert (timing.path, timing.method, timing.status) == ("/boom", "GET", 500)
    assert timing.accepted_at <= timing.started_at <= timing.finished_at
    assert timing.as_dict()["thread"] == "labkit-wsgi[wsgi]-worker-1"


@pytest.mark.parametrize("serve", [serve_wsgi, serve_asgi], ids=["wsgi", "asgi"])
def test_named_server_restarts_three_times_cleanly(serve: Any) -> None:
    app = instant_wsgi if serve is serve_wsgi else instant_asgi
    previous = None
    for _ in range(3):
        server = serve(app, name="restart")
        assert server.running and get(server.port) == 200
        assert running_servers() == {"restart": server}
        if previous is not None:
            assert not previous.running
            with pytest.raises(ConnectionRefusedError):
                get(previous.port)
        previous = server
        assert len([n for n in lab_threads() if "[restart]" in n]) == (
            5 if serve is serve_wsgi else 1  # 4 workers and the acceptor, or uvicorn's thread
        )

    assert stop_server("restart") is True
    assert stop_server("restart") is False
    assert lab_threads() == []
    with pytest.raises(ConnectionRefusedError):
        get(server.port)


@pytest.mark.parametrize("server_class", [WSGIServer, ASGIServer])
def test_fixed_port_taken_by_another_process_is_named(server_class: Any) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"Port {port} .* in use by another process"):
            server_class(instant_wsgi, port=port).start()


def test_fixed_port_taken_by_a_lab_server_names_it() -> None:
    holder = serve_wsgi(instant_wsgi, name="holder", threads=1)
    with pytest.raises(PortInUseError, match="labkit server 'holder'"):
        serve_asgi(instant_asgi, name="other", port=holder.port)
    # The same name on the same port replaces the old server instead of colliding with it.
    again = serve_wsgi(instant_wsgi, name="holder", threads=1, port=holder.port)
    assert again.port == holder.port and get(again.port) == 200


def test_uvicorn_failing_to_start_in_its_thread_is_reported() -> None:
    server = ASGIServer(instant_asgi, loop="uvloop")  # uvloop is not installed
    with pytest.raises(RuntimeError, match="could not start serving.*uvloop"):
        server.start()
    assert not server.running
    with pytest.raises(ConnectionRefusedError):
        get(server.port)


def test_stop_is_bounded_while_a_request_is_still_running() -> None:
    server = WSGIServer(sleepy_wsgi, threads=1).start()
    client = threading.Thread(target=get, args=(server.port, "/slow?1.5"))
    client.start()
    time.sleep(0.3)  # let the worker take the request
    started = time.perf_counter()
    with pytest.warns(ServerStopWarning, match="still running a request"):
        server.stop(timeout=0.2)
    assert time.perf_counter() - started < 1.0
    assert not server.running
    client.join(5)  # the request still completes; then the worker exits on its own
    for _ in range(50):
        if not lab_threads():
            break
        time.sleep(0.05)


SERVER_CELL = """
async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})

server = serve_asgi(app, name="demo")
conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
conn.request("GET", "/")
response = conn.getresponse()
print(response.status, response.read().decode(), server.port)
conn.close()
"""


@pytest.mark.slow
def test_rerunning_a_notebook_server_cell_three_times(tmp_path: Any) -> None:
    nb = nbformat.v4.new_notebook()
    cells = [
        "import http.client, threading\nfrom labkit.servers import serve_asgi",
        SERVER_CELL,
        SERVER_CELL,
        SERVER_CELL,
        "print(sorted(t.name for t in threading.enumerate() if t.name.startswith('labkit-')))",
    ]
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = NotebookClient(
        nb, kernel_name="python3", timeout=60, resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()

    printed = ["".join(o.get("text", "") for o in cell.outputs) for cell in nb.cells]
    errors = [o for cell in nb.cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []
    runs = [line.split() for line in printed[1:4]]
    assert [run[:2] for run in runs] == [["200", "hello"]] * 3, printed
    assert printed[4].strip() == "['labkit-asgi[demo]']", printed
