"""`labkit bench`: the course's scenarios measured in one run, printed as tables, written as JSON.

Quick mode (`--quick`, under two minutes on 2 cores): the sync chat view on a 4-thread WSGI
server and the recommended async view on uvicorn, both in this process as in a notebook
kernel, against the mock LLM at a fixed latency with closed-loop users.

Full mode (the default, under ten minutes on 2 cores) adds the sections of `SECTIONS`: users
sweeps, uvicorn and Granian workers, LLM connections, cache hits, single-flight, document
queries and the framework's CPU per request. Figures are reported with their scenario (users,
latency_s, workers, cpus, duration_s) and, for throughput, Little's-law bound; never asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

from labkit.bench.plan import Plan, numbers

# JSON key -> (module, function): the full bench's sections, in the order they run.
SECTIONS: dict[str, tuple[str, str]] = {
    "users_sweep": ("labkit.bench.serving", "users_sweep"),
    "uvicorn_workers": ("labkit.bench.serving", "uvicorn_workers"),
    "llm_connections": ("labkit.bench.upstream", "llm_connections"),
    "cache_hits": ("labkit.bench.storage", "cache_hits"),
    "single_flight": ("labkit.bench.upstream", "single_flight"),
    "document_queries": ("labkit.bench.storage", "document_queries"),
    "framework_cpu": ("labkit.bench.serving", "framework_cpu"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Plan()
    parser.add_argument("--quick", action="store_true", help="run the core scenarios only")
    parser.add_argument("--json", metavar="FILE", help="write the results to FILE as JSON")
    parser.add_argument(
        "--users",
        type=int,
        default=defaults.users,
        help="closed-loop users of the core scenarios and framework CPU",
    )
    parser.add_argument(
        "--latency",
        type=float,
        default=defaults.latency_s,
        help="mock LLM latency, seconds, of the core scenarios, workers and framework CPU",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds per load run; None: each section's own",
    )
    parser.add_argument(
        "--sweep-users",
        type=numbers(int),
        default=",".join(map(str, defaults.sweep_users)),
        metavar="N,N",
        help="full mode: users of the sweep",
    )
    parser.add_argument(
        "--sweep-latencies",
        type=numbers(float),
        default=",".join(map(str, defaults.sweep_latencies)),
        metavar="S,S",
        help="full mode: mock latencies of the sweep, seconds",
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=defaults.calls,
        help="full mode: LLM calls per way in the connections section",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=defaults.rounds,
        help="full mode: alternating rounds of the framework CPU runs",
    )
    parser.add_argument(
        "--only",
        type=lambda text: text.split(","),
        metavar="SECTION,...",
        help=f"full mode: run only these (no core scenarios) of {', '.join(SECTIONS)}",
    )


def run(args: argparse.Namespace) -> int:
    plan = Plan.from_args(args)
    if args.quick:
        report = quick(plan)
        print(table(report["scenarios"]))
    else:
        unknown = set(args.only or ()) - set(SECTIONS)
        if unknown:
            print(f"labkit bench: no section {', '.join(sorted(unknown))}; "
                  f"the sections are {', '.join(SECTIONS)}", file=sys.stderr)  # fmt: skip
            return 2
        report = full(plan, only=args.only, echo=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"\nwrote {args.json}")
    failed = [key for key in report.get("sections", []) if report[key].get("error")]
    return 1 if failed else 0


def quick(plan: Plan | None = None, **scale: Any) -> dict[str, Any]:
    """Run the quick scenarios and return the report (machine, date, scenarios)."""
    plan = plan or Plan(**scale)
    mock = _boot()
    from labkit.bench.serving import quick_scenarios

    return {**_head("quick"), "scenarios": quick_scenarios(plan, mock)}


def full(plan: Plan | None = None, *, only: list[str] | None = None, echo: bool = False) -> dict:
    """Run the quick scenarios, then every section (or `only` these); return the report."""
    import importlib

    from labkit.bench.report import failed, render
    from labkit.bench.serving import quick_scenarios

    plan = plan or Plan()
    mock = _boot()
    started = time.perf_counter()
    report: dict[str, Any] = {**_head("full"), "plan": vars(plan) | {"only": only}}
    report["scenarios"] = quick_scenarios(plan, mock) if not only else []
    if echo and report["scenarios"]:
        print(f"== core scenarios ==\n{table(report['scenarios'])}\n", flush=True)
    report["sections"] = [key for key in SECTIONS if not only or key in only]
    for key in report["sections"]:
        module, function = SECTIONS[key]
        try:
            data = getattr(importlib.import_module(module), function)(plan, mock)
        except Exception as error:  # one broken section must not lose the others' figures
            data = failed(key.replace("_", " "), error)
        report[key] = data
        if echo:
            print(render(data) + "\n", flush=True)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def table(scenarios: list[dict]) -> str:
    """A plain-text table of the core scenarios, the bound beside the throughput."""
    from labkit.bench.report import grid

    columns = ["name", "workers", "users", "latency_s", "rps", "bound_rps", "efficiency",
               "p50_ms", "p95_ms", "errors"]  # fmt: skip
    return grid(scenarios, columns)


def machine() -> dict[str, Any]:
    """The machine the figures were measured on."""
    from labkit.bench.report import machine as describe

    return describe()


def _boot() -> Any:
    os.environ.setdefault("LAB_STATE_DIR", tempfile.mkdtemp(prefix="lab-bench-"))
    from labkit.boot import boot, mock_llm

    boot(quiet=True, llm_preset="instant")
    return mock_llm()


def _head(mode: str) -> dict[str, Any]:
    return {
        "machine": machine(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": mode,
    }
