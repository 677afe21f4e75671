"""Load-run sections: sync vs async serving, users sweeps, uvicorn/Granian workers, framework CPU.

Every run is Locust as a subprocess against a server on loopback, with the mock LLM at a fixed
latency and no connect delay (the starter's new connection per call would otherwise lower the
sync bound below workers / latency_s). Servers start fresh for each run: a sync server stopped
drops its queue, so one run's backlog never leaks into the next.
"""

from __future__ import annotations

import sys
from typing import Any

from labkit.bench.plan import Plan
from labkit.bench.report import load_row, row, section

LOAD_COLUMNS = ["name", "workers", "users", "latency_s", "duration_s", "rps", "bound_rps",
                "efficiency", "p50_ms", "p95_ms", "errors", "cpu_ms_per_request"]  # fmt: skip
SYNC_THREADS = 4


def quick_scenarios(plan: Plan, mock: Any) -> list[dict[str, Any]]:
    """The quick bench: the sync view on 4 threads vs the async view on in-kernel uvicorn."""
    from labkit import reference

    mock.configure(latency_s=plan.latency_s, connect_delay_s=0)
    # The sync view with a shared client, so the only difference from "after" is blocking.
    return [
        sync_run(plan.users, plan.latency_s, plan.seconds(30), view=reference.sync_chat),
        async_run(plan.users, plan.latency_s, plan.seconds(20)),
    ]


def sync_run(users: int, latency_s: float, duration_s: float, *, view: Any) -> dict[str, Any]:
    """One closed-loop run of `view` on a 4-thread WSGI server in this process."""
    from labkit.servers import WSGIServer
    from labproject import routes
    from labproject.wsgi import application

    with (
        routes.override("chat", view),
        WSGIServer(application, threads=SYNC_THREADS) as server,
    ):
        result, cpu_s = _load(server.url, users, latency_s, duration_s, workers=SYNC_THREADS)
    return load_row("sync-wsgi", "wsgi-threads", SYNC_THREADS, result, cpu_s)


def async_run(users: int, latency_s: float, duration_s: float, *, view: Any = None) -> dict:
    """One closed-loop run of the recommended setup (or `view` in it) on in-process uvicorn."""
    from labkit import reference
    from labkit.servers import ASGIServer
    from labproject import routes

    # Middleware hooks run inline, no thread hops: the course's recommended configuration.
    application = reference.asgi_application()
    # The loop's pooled client caps its calls in flight: that is the async server's bound.
    pool = reference.POOL_LIMITS.max_connections
    with routes.override("chat", view or reference.chat), ASGIServer(application) as server:
        result, cpu_s = _load(server.url, users, latency_s, duration_s, workers=pool)
    return load_row("async-uvicorn", "uvicorn", 1, result, cpu_s)


def _load(url: str, users: int, latency_s: float, duration_s: float, *, workers: int | None):
    from labkit.load import run_load
    from labkit.meters import measure

    with measure() as meter:
        result = run_load(
            url, scenario="chat", users=users, duration_s=duration_s, latency_s=latency_s,
            workers=workers, timeout_s=60, progress=sys.stderr.isatty(),
        )  # fmt: skip
    return result, meter.cpu_s


def users_sweep(plan: Plan, mock: Any) -> dict[str, Any]:
    """Sync (starter view, 4 threads) and async (recommended view) across users and latencies."""
    from labproject.ai import views

    rows = []
    for latency_s in plan.sweep_latencies:
        # Long enough for 4 threads to answer 30+ requests, so sync percentiles mean something.
        duration_s = plan.seconds(max(10, 10 * latency_s))
        mock.configure(latency_s=latency_s, connect_delay_s=0)
        for users in plan.sweep_users:
            rows.append(sync_run(users, latency_s, duration_s, view=views.chat))
        for users in plan.sweep_users:
            rows.append(async_run(users, latency_s, duration_s))
    notes = [
        "sync-wsgi: the starter chat view (new client per call) on 4 threads; bound_rps = "
        "min(users, 4) / latency_s. async-uvicorn: labkit.reference.chat on one in-process "
        "event loop; bound_rps = min(users, 100 pooled LLM connections) / latency_s.",
        "cpu_ms_per_request is this process's CPU (server, Django, load-runner bookkeeping) "
        "over answered requests. A sync run's p95 shows only the queue that forms within the "
        "run (duration_s), not the steady state of that many users.",
        *_warnings(rows),
    ]
    return section(
        "users sweep",
        "Closed-loop users, no wait, against the mock LLM at a fixed latency.",
        LOAD_COLUMNS, rows, notes=notes,
    )  # fmt: skip


# The subprocess servers the workers section compares, serving the same app the same way.
SERVERS = {"uvicorn": "serve_uvicorn", "granian": "serve_granian"}


def uvicorn_workers(plan: Plan, mock: Any) -> dict[str, Any]:
    """The recommended app under uvicorn and Granian subprocesses with 1 and 2 workers.

    The JSON key stays `uvicorn_workers` (the README renders committed runs by it); Granian
    rows are peers in the same table: same app, users, latency and duration.
    """
    from labkit import servers
    from labkit.load import run_load
    from labkit.reference import POOL_LIMITS

    users, latency_s, duration_s = plan.workers_users, plan.latency_s, plan.seconds(15)
    pool = POOL_LIMITS.max_connections  # per worker process: each has its own client
    mock.configure(latency_s=latency_s, connect_delay_s=0)
    rows = []
    for workers in (1, 2):
        for program, serve in SERVERS.items():
            server = getattr(servers, serve)(
                name=f"bench-{program}-{workers}",
                asgi_app="labkit.bench.apps:reference_application",
                workers=workers,
                extra_args=["--factory"],
            )
            try:
                _warm(server.url, requests=4 * workers)
                started = server.cpu_s()
                result = run_load(
                    server.url, scenario="chat", users=users, duration_s=duration_s,
                    latency_s=latency_s, workers=workers * pool, timeout_s=60,
                    progress=sys.stderr.isatty(),
                )  # fmt: skip
                cpu_s = server.cpu_s() - started
            finally:
                server.stop()
            name = f"{program}-{workers}w"
            rows.append(load_row(name, f"{program}-process", workers, result, cpu_s))
    notes = [
        "uvicorn and Granian as subprocesses (labkit.servers.serve_uvicorn / serve_granian, "
        "asyncio loop, no access log) serving labkit.bench.apps:reference_application: the "
        "inline middleware and labkit.reference.chat. bound_rps = min(users, workers x 100 "
        "pooled LLM connections) / latency_s; below it, the CPUs are the limit.",
        "cpu_ms_per_request is the server's process tree (main process and workers).",
        *_warnings(rows),
    ]
    return section(
        "uvicorn and Granian workers",
        "The same async app on two servers with 1 and 2 worker processes, enough users to be "
        "CPU-bound.",
        LOAD_COLUMNS, rows, notes=notes,
    )  # fmt: skip


def _warnings(rows: list[dict[str, Any]]) -> list[str]:
    """The load runner's warnings, each with the run it is about."""
    return [
        f"{r['name']}, {r['users']} users, latency_s {r['latency_s']:g}: {warning}"
        for r in rows
        for warning in r["warnings"]
    ]


def _warm(url: str, *, requests: int) -> None:
    """Send a few chat requests at once before measuring, and wait for their answers.

    A fresh worker process pays for its first requests (the first database connection, the
    loop's LLM client, lazy imports); that belongs to starting up, not to serving.
    """
    import json
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    # No proxy: the server is on loopback, whatever $http_proxy says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    body = json.dumps({"prompt": "warm-up"}).encode()

    def one(_: int) -> None:
        request = urllib.request.Request(
            url + "/api/chat/", data=body, headers={"content-type": "application/json"}
        )
        try:
            with opener.open(request, timeout=30) as response:
                response.read()
        except OSError:
            pass  # the load run that follows reports errors; warming up only has to try

    with ThreadPoolExecutor(requests) as pool:
        list(pool.map(one, range(requests)))


def framework_cpu(plan: Plan, mock: Any) -> dict[str, Any]:
    """CPU per request: the course's Django async setup beside a minimal Starlette app."""
    from labkit.bench.apps import chat_without_log, starlette_application
    from labkit.load import latency_percentiles

    users, latency_s, duration_s = plan.users, plan.latency_s, plan.seconds(10)
    mock.configure(latency_s=latency_s, connect_delay_s=0)
    contenders = {
        "django-reference": {},
        "django-no-log-row": {"view": chat_without_log},
        "starlette": {"app": starlette_application()},
    }
    runs: dict[str, list[tuple[Any, float]]] = {name: [] for name in contenders}
    for round_ in range(plan.rounds):
        # Alternate the order, so a neighbour's load on this shared machine hits both sides.
        order = list(contenders) if round_ % 2 == 0 else list(reversed(contenders))
        for name in order:
            runs[name].append(_measured(users, latency_s, duration_s, **contenders[name]))
    rows = []
    for name, measured in runs.items():
        requests = sum(r.requests for r, _ in measured)
        cpu_s = sum(c for _, c in measured)
        every_ms = [t.ms for r, _ in measured for t in r.timings]
        percentiles = latency_percentiles(every_ms)
        first = measured[0][0]
        rows.append(row(
            name, users=users, latency_s=latency_s, workers=1,
            duration_s=sum(r.duration_s for r, _ in measured), server="uvicorn",
            rounds=len(measured),
            rps=round(sum(r.rps for r, _ in measured) / len(measured), 2),
            bound_rps=first.bound_rps,
            p50_ms=percentiles["p50_ms"], p95_ms=percentiles["p95_ms"],
            requests=requests, errors=sum(r.errors for r, _ in measured),
            cpu_ms_per_request=round(cpu_s * 1000 / max(requests, 1), 2),
        ))  # fmt: skip
    base = rows[-1]["cpu_ms_per_request"] or None
    for line in rows:
        line["cpu_vs_starlette"] = round(line["cpu_ms_per_request"] / base, 2) if base else None
    notes = [
        "All three on uvicorn in this process, one event loop, the same pooled AsyncOpenAI "
        "client per loop (labkit.reference.async_client), the same load, in alternating "
        f"order over {plan.rounds} round(s); rps is the mean of the rounds.",
        "django-reference is labkit.reference.chat behind reference.asgi_application(): it "
        "also saves an AICall row per call (SQLite, one write at a time); django-no-log-row "
        "is the same view without that write.",
    ]
    columns = ["name", "users", "latency_s", "duration_s", "rounds", "rps", "bound_rps",
               "p50_ms", "p95_ms", "errors", "cpu_ms_per_request", "cpu_vs_starlette"]  # fmt: skip
    return section(
        "framework CPU",
        "CPU ms per request, Django's recommended async setup vs Starlette, same load.",
        columns, rows, notes=notes,
    )  # fmt: skip


def _measured(users: int, latency_s: float, duration_s: float, **server: Any):
    from labkit import reference
    from labkit.servers import ASGIServer
    from labproject import routes

    if "app" in server:
        with ASGIServer(server["app"]) as running:
            return _load(running.url, users, latency_s, duration_s, workers=None)
    view = server.get("view", reference.chat)
    with routes.override("chat", view), ASGIServer(reference.asgi_application()) as running:
        return _load(running.url, users, latency_s, duration_s, workers=None)
