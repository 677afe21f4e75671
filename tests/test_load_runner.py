"""Real load runs: Locust subprocesses against tiny threaded servers started here.

Bands are wide on purpose: the machine has 2 cores shared with other work.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from labkit.load import (
    TAKEHOME_LOCUSTFILE,
    LoadError,
    LoadResult,
    Scenario,
    arun_load,
    latency_percentiles,
    run_load,
    sweep,
)
from labkit.load import runner as runner_module

pytestmark = pytest.mark.slow


@dataclass
class TinyServer:
    """Answers /api/chat/ and /api/documents/<id>/summary/ with JSON after `delay_s`."""

    delay_s: float = 0.2
    limit: int | None = None  # at most this many requests served at once
    status: int = 200
    prompts: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        slots = threading.Semaphore(self.limit) if self.limit else None
        spec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Else the headers and body go out as two small writes and wait on delayed ACKs.
            disable_nagle_algorithm = True

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.answer()

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size) or b"{}")
                spec.prompts.append(body.get("prompt", ""))
                self.answer()

            def answer(self) -> None:
                if slots:
                    slots.acquire()
                try:
                    time.sleep(spec.delay_s)
                finally:
                    if slots:
                        slots.release()
                out = json.dumps({"reply": "ok", "path": self.path}).encode()
                self.send_response(spec.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # Locust drops connections when a run ends; that's expected here.

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def serve() -> Iterator[type[TinyServer]]:
    servers: list[TinyServer] = []

    def start(**options: object) -> TinyServer:
        server = TinyServer(**options)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def closed_run(serve) -> LoadResult:
    server = serve(delay_s=0.2)
    return run_load(
        server.url, users=20, duration_s=5, latency_s=0.2, server="tiny", progress=False
    )


def test_closed_loop_reaches_littles_law_bound(closed_run: LoadResult) -> None:
    print(f"\n{closed_run}")
    assert closed_run.bound_rps == pytest.approx(100.0)
    assert closed_run.efficiency is not None and closed_run.efficiency >= 0.6, closed_run
    assert closed_run.errors == 0
    assert closed_run.p50_ms is not None and 195 <= closed_run.p50_ms < 400
    assert closed_run.warnings == []
    machine = closed_run.machine  # measured on every run: what the machine did meanwhile
    assert machine is not None and machine.wall_s >= closed_run.duration_s
    assert machine.lab_cpu_s > 0 and machine.machine_cpu_s > 0


def test_percentiles_come_from_raw_timings(closed_run: LoadResult) -> None:
    values = [t.ms for t in closed_run.timings]
    assert len(values) == closed_run.requests >= 100
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert (closed_run.p50_ms, closed_run.p95_ms, closed_run.p99_ms) == (
        cuts[49],
        cuts[94],
        cuts[98],
    )
    assert latency_percentiles(values)["p95_ms"] == cuts[94]
    assert closed_run.max_ms == max(values)
    # Raw timings keep sub-millisecond precision that Locust's buckets round away.
    assert any(v != round(v) for v in values)


def test_closed_loop_against_two_workers_is_capped(serve) -> None:
    server = serve(delay_s=0.2, limit=2)
    result = run_load(server.url, users=10, duration_s=5, latency_s=0.2, workers=2, progress=False)
    print(f"\n{result}")
    assert result.bound_rps == pytest.approx(10.0)
    assert 0.7 <= result.rps / 10.0 <= 1.2, result
    # Ten users share two slots: each waits about five service times.
    assert result.p50_ms is not None and result.p50_ms > 600


def test_open_loop_holds_the_arrival_rate(serve) -> None:
    server = serve(delay_s=0.01)
    result = run_load(
        server.url,
        mode="open",
        arrival_rate=20,
        duration_s=5,
        scenario="summary",
        progress=False,
    )
    print(f"\n{result}\n{result.arrivals}")
    assert result.arrivals is not None
    assert result.arrivals["dropped"] == 0
    assert result.arrivals["late"] <= 1
    assert 0.8 <= result.rps / 20 <= 1.1, result
    assert result.warnings == []
    assert server.prompts == []  # summary is a GET
    assert {t.name for t in result.timings} == {"/api/documents/[id]/summary/"}


def test_open_loop_shows_the_queue_a_slow_server_builds(serve) -> None:
    server = serve(delay_s=0.2, limit=1)  # about 5 requests/s
    result = run_load(
        server.url,
        mode="open",
        arrival_rate=20,
        duration_s=5,
        latency_s=0.2,
        workers=1,
        max_in_flight=30,
        progress=False,
    )
    print(f"\n{result}\n{result.arrivals}")
    assert result.bound_rps == pytest.approx(5.0)
    assert result.p95_ms is not None and result.p95_ms > 5 * 200
    third = max(1, len(result.timings) // 3)
    early = statistics.fmean(t.ms for t in result.timings[:third])
    late = statistics.fmean(t.ms for t in result.timings[-third:])
    assert late > 3 * early, (early, late)
    assert result.arrivals is not None and result.arrivals["dropped"] > 0
    assert result.arrivals["unfinished"] > 0
    text = " ".join(result.warnings)
    assert "dropped" in text and "queue grew" in text


def test_repeat_share_repeats_about_that_share_of_prompts(serve) -> None:
    server = serve(delay_s=0.01)
    result = asyncio.run(
        arun_load(
            server.url, scenario="mix", repeat_share=0.5, users=4, duration_s=3, progress=False
        )
    )
    assert result.requests >= 60
    share = sum(t.repeated for t in result.timings) / result.requests
    assert 0.35 <= share <= 0.65, share
    # What the server saw agrees: repeats come from a handful of hot prompts.
    seen = server.prompts
    repeated = len(seen) - len(set(seen))
    assert 0.3 <= repeated / len(seen) <= 0.65


def test_chat_prompts_never_repeat_by_default(serve) -> None:
    server = serve(delay_s=0.01)
    run_load(server.url, users=2, duration_s=2, progress=False)
    assert len(server.prompts) >= 20
    assert len(set(server.prompts)) == len(server.prompts)


def test_too_few_requests_is_flagged(serve) -> None:
    server = serve(delay_s=0.7)
    result = run_load(server.url, users=1, duration_s=2, progress=False)
    assert 1 <= result.requests < 20
    assert any("too few" in w for w in result.warnings), result.warnings


def test_error_dominated_run_is_flagged(serve) -> None:
    server = serve(delay_s=0.02, status=500)
    result = run_load(server.url, users=2, duration_s=2, progress=False)
    assert result.requests >= 30
    assert result.error_rate == 1.0
    assert result.errors_by_kind == {"http_500": result.requests}
    assert result.rps == 0
    assert result.failed and result.failure.startswith("This run failed"), result.failure
    assert "The view raised" in result.failure
    assert str(result).startswith("FAILED: This run failed")


def test_timeouts_count_as_errors_of_their_own_kind(serve) -> None:
    server = serve(delay_s=1.5)
    result = run_load(server.url, users=2, duration_s=2, timeout_s=0.4, progress=False)
    assert result.requests >= 2
    assert set(result.errors_by_kind) == {"timeout"}
    assert all(350 <= t.ms < 1000 for t in result.timings)


@pytest.mark.parametrize(
    "url", ["http://example.com", "http://10.0.0.1:8000", "http://192.168.1.10/", "ftp://127.0.0.1"]
)
def test_refuses_anything_but_loopback(url: str) -> None:
    with pytest.raises(LoadError, match="127.0.0.1"):
        run_load(url, duration_s=1, progress=False)


def test_says_when_nothing_listens() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LoadError, match="Nothing is accepting connections"):
        run_load(f"http://127.0.0.1:{port}", duration_s=1, progress=False)


def test_locust_failing_to_start_shows_its_stderr(serve, tmp_path, monkeypatch) -> None:
    broken = tmp_path / "locustfile.py"
    broken.write_text("raise RuntimeError('deliberately broken locustfile')\n")
    monkeypatch.setattr(runner_module, "LOCUSTFILE", broken)
    server = serve(delay_s=0.01)
    with pytest.raises(LoadError, match="(?s)Locust failed to start.*deliberately broken"):
        run_load(server.url, users=1, duration_s=1, progress=False)


def test_two_processes_share_the_load(serve) -> None:
    server = serve(delay_s=0.1)
    result = run_load(
        server.url,
        users=10,
        duration_s=3,
        latency_s=0.1,
        processes=2,
        scenario=Scenario.custom("/api/chat/", method="POST", body={"prompt": "same"}),
        progress=False,
    )
    print(f"\n{result}")
    assert result.efficiency is not None and result.efficiency >= 0.5, result
    assert not any("raw timings" in w for w in result.warnings)
    assert set(server.prompts) == {"same"}


def test_takehome_locustfile_runs_under_plain_locust(serve, tmp_path) -> None:
    server = serve(delay_s=0.01)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(TAKEHOME_LOCUSTFILE),
            "--headless",
            "--host",
            server.url,
            "-u",
            "2",
            "-r",
            "2",
            "-t",
            "2s",
            "--only-summary",
            "--json-file",
            str(tmp_path / "stats"),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert sum(s["num_requests"] for s in stats) >= 2
    assert sum(s["num_failures"] for s in stats) == 0


def test_runs_inside_a_jupyter_kernel_without_importing_locust(serve) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    server = serve(delay_s=0.02)
    code = (
        "import sys\n"
        "from labkit.load import arun_load, run_load\n"
        f"r = run_load({server.url!r}, users=4, duration_s=2, latency_s=0.02)\n"
        f"r2 = await arun_load({server.url!r}, users=4, duration_s=2)\n"
        "assert 'gevent' not in sys.modules and 'locust' not in sys.modules\n"
        "r.requests > 30 and r2.requests > 30"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(notebook, timeout=60, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    widgets = [
        o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(widgets) == 2  # one live progress bar per run
    assert outputs[-1]["data"]["text/plain"] == "True"


def test_an_overrunning_locust_is_killed(serve, monkeypatch) -> None:
    server = serve(delay_s=0.01)
    # A negative grace puts the deadline 2 s before the 5 s run would end.
    monkeypatch.setattr(runner_module, "GRACE_S", -3.0)
    started = time.monotonic()
    try:
        result = run_load(server.url, users=2, duration_s=5, progress=False)
        text = " ".join(result.warnings)
    except LoadError as exc:  # on a busy machine Locust may not have started by then
        text = str(exc)
    assert time.monotonic() - started < 4.5
    assert "overran" in text and "killed" in text


def test_sweep_over_users_follows_the_bound(serve) -> None:
    server = serve(delay_s=0.1)
    result = sweep(server.url, users=[2, 6], duration_s=2, latency_s=0.1, progress=False)
    assert result.values == [2, 6]
    assert [r.bound_rps for r in result.results] == pytest.approx([20, 60])
    low, high = (r.rps for r in result.results)
    assert high > 2 * low, (low, high)


def test_live_progress_counts_requests_in_flight(serve) -> None:
    from labkit.load.progress import Snapshot
    from labkit.load.runner import POLL_S, LoadPlan, _LocustRun
    from labkit.load.scenarios import resolve_scenario

    class Capture:
        def __init__(self) -> None:
            self.snapshots: list[Snapshot] = []
            self.closed: list[str] = []

        def update(self, snapshot: Snapshot) -> None:
            self.snapshots.append(snapshot)

        def close(self, summary: str, outcome: str = "success") -> None:
            self.closed.append(outcome)

    server = serve(delay_s=0.5)
    progress = Capture()
    run = _LocustRun(
        LoadPlan(server.url, resolve_scenario("chat"), users=8, duration_s=3), progress
    )
    try:
        run.start()
        while not run.poll():
            time.sleep(POLL_S)
        result = run.finish()
    finally:
        run.cleanup()
    counts = [s.in_flight for s in progress.snapshots if s.in_flight is not None]
    # 8 users, each always waiting on a 0.5 s answer: the generator says so while it runs.
    assert counts and 6 <= max(counts) <= 8, counts
    assert progress.closed == ["success" if not result.warnings else "warning"]
