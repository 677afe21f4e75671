"""`labkit bench`: the course's core scenarios measured in one run, written as JSON.

Quick mode (under two minutes on 2 cores): the starter sync chat view on a 4-thread WSGI
server and the recommended async view on uvicorn, both in this process as in a notebook
kernel, against the mock LLM at a fixed 1 s latency with 50 closed-loop users. Figures are
reported with their scenario and Little's-law bound, never asserted here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="run the core scenarios only")
    parser.add_argument("--json", metavar="FILE", help="write the results to FILE as JSON")
    parser.add_argument("--users", type=int, default=50, help="closed-loop users per scenario")
    parser.add_argument("--latency", type=float, default=1.0, help="mock LLM latency, seconds")
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per scenario (default: by mode)"
    )


def run(args: argparse.Namespace) -> int:
    if not args.quick:
        print("labkit bench: only --quick exists so far; running it.", file=sys.stderr)
    report = quick(users=args.users, latency_s=args.latency, duration_s=args.duration)
    print(table(report["scenarios"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    return 0


def quick(*, users: int = 50, latency_s: float = 1.0, duration_s: float | None = None) -> dict:
    """Run the quick scenarios and return the report (machine, date, scenarios)."""
    os.environ.setdefault("LAB_STATE_DIR", tempfile.mkdtemp(prefix="lab-bench-"))
    from labkit.boot import boot

    boot(quiet=True, llm_preset="instant")
    from labkit.boot import mock_llm

    mock = mock_llm()
    # No connect delay here: these scenarios compare sync and async serving, and the starter's
    # new connection per call would otherwise lower the sync bound below workers / latency.
    mock.configure(latency_s=latency_s, connect_delay_s=0)
    scenarios = [
        _sync_wsgi(users, latency_s, duration_s or 30, threads=4),
        _async_uvicorn(users, latency_s, duration_s or 20),
    ]
    return {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "mode": "quick", "scenarios": scenarios}  # fmt: skip


def _sync_wsgi(users: int, latency_s: float, duration_s: float, *, threads: int) -> dict:
    from labkit import reference
    from labkit.servers import WSGIServer
    from labproject import routes
    from labproject.wsgi import application

    # The sync view with a shared client, so the only difference from "after" is blocking.
    with (
        routes.override("chat", reference.sync_chat),
        WSGIServer(application, threads=threads) as server,
    ):
        result, meter = _load(
            server.url, users, latency_s, duration_s, workers=threads, label="sync"
        )
    return _scenario("sync-wsgi", "wsgi-threads", threads, users, latency_s, result, meter)


def _async_uvicorn(users: int, latency_s: float, duration_s: float) -> dict:
    from labkit import reference
    from labkit.servers import ASGIServer
    from labproject import routes

    application = reference.asgi_application()  # middleware hooks run inline, no thread hops
    with routes.override("chat", reference.chat), ASGIServer(application) as server:
        result, meter = _load(server.url, users, latency_s, duration_s, workers=None, label="async")
    return _scenario("async-uvicorn", "uvicorn", 1, users, latency_s, result, meter)


def _load(url: str, users: int, latency_s: float, duration_s: float, *, workers, label):
    from labkit.load import run_load
    from labkit.meters import measure

    with measure(label) as meter:
        result = run_load(
            url, scenario="chat", users=users, duration_s=duration_s, latency_s=latency_s,
            workers=workers, server=label, timeout_s=60, progress=sys.stderr.isatty(),
        )  # fmt: skip
    return result, meter


def _scenario(name, server, workers, users, latency_s, result, meter) -> dict[str, Any]:
    data = result.to_dict()
    answered = max(data["requests"], 1)
    return {
        "name": name, "server": server, "workers": workers, "users": users,
        "latency_s": latency_s, "rps": data["rps"], "bound_rps": data["bound_rps"],
        "efficiency": data["efficiency"], "p50_ms": data["p50_ms"], "p95_ms": data["p95_ms"],
        "p99_ms": data["p99_ms"], "requests": data["requests"], "errors": data["errors"],
        "duration_s": data["duration_s"], "warnings": data["warnings"],
        "server_cpu_ms_per_request": round(meter.cpu_s * 1000 / answered, 2),
    }  # fmt: skip


def machine() -> dict[str, Any]:
    from labkit.doctor import cpu_count, memory_bytes

    return {
        "cpus": cpu_count(),
        "memory_gib": round(memory_bytes() / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
    }


def table(scenarios: list[dict]) -> str:
    """A plain-text table of the scenarios, the bound beside the throughput."""
    columns = ["name", "workers", "users", "latency_s", "rps", "bound_rps", "efficiency",
               "p50_ms", "p95_ms", "errors"]  # fmt: skip
    rows = [[_fmt(s.get(c)) for c in columns] for s in scenarios]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return "-" if value is None else str(value)
