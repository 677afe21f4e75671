"""Regenerate the README's generated blocks (tests/test_readme.py fails on drift).

python tools/readme.py           # rewrite the `labkit --help` block and the benchmark block

The benchmark block renders the newest `docs/bench/*.json` (written by `labkit bench --json`),
so the README's figures are those of a real, committed run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- cli:begin -->\n)(.*?)(<!-- cli:end -->)", re.S)
BENCH_BLOCK = re.compile(r"(<!-- bench:begin -->\n)(.*?)(<!-- bench:end -->)", re.S)
BENCH_RUNS = README.parent / "docs" / "bench"
SECTIONS = [
    "users_sweep",
    "uvicorn_workers",
    "llm_connections",
    "cache_hits",
    "single_flight",
    "document_queries",
    "framework_cpu",
]


def cli_help() -> str:
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return f"```text\n$ labkit --help\n{result.stdout.rstrip()}\n```\n"


def newest_bench() -> Path:
    return sorted(BENCH_RUNS.glob("*.json"))[-1]


def bench_text(path: Path) -> str:
    """The run's sections as `labkit bench` prints them, notes left in the JSON."""
    import json

    sys.path.insert(0, str(README.parent))
    from labkit.bench import table
    from labkit.bench.report import render

    data = json.loads(path.read_text())
    m = data["machine"]
    head = (
        f"Measured {data['date'][:10]} on {m['cpus']:g} CPUs, {m['memory_gib']:g} GiB, "
        f"Python {m['python']}, {m['platform'].split('-with-')[0]}; `labkit bench --json` "
        f"(full mode) took {data['wall_s'] / 60:.1f} min. The whole run, notes included: "
        f"[`{path.relative_to(README.parent)}`]({path.relative_to(README.parent)}).\n\n"
    )
    parts = ["== core scenarios ==", table(data["scenarios"])]
    for key in SECTIONS:
        parts += ["", render({**data[key], "notes": []})]
    return head + "```text\n" + "\n".join(parts) + "\n```\n"


def rendered(readme: str) -> str:
    readme = BLOCK.sub(lambda m: m.group(1) + cli_help() + m.group(3), readme)
    return BENCH_BLOCK.sub(lambda m: m.group(1) + bench_text(newest_bench()) + m.group(3), readme)


if __name__ == "__main__":
    README.write_text(rendered(README.read_text()))
    print(f"updated {README.name}")
