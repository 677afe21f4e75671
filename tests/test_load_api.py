"""The public face of labkit.load, and the rule that the kernel never imports Locust."""

from __future__ import annotations

import ast
import subprocess
import sys

import labkit.load
from labkit.load import LOCUSTFILE, TAKEHOME_LOCUSTFILE


def test_exported_members() -> None:
    assert labkit.load.__all__ == sorted(labkit.load.__all__)
    assert labkit.load.__all__ == [
        "Comparison",
        "LOCUSTFILE",
        "LoadError",
        "LoadResult",
        "PROMPTS",
        "SCENARIOS",
        "Scenario",
        "Sweep",
        "TAKEHOME_LOCUSTFILE",
        "Timing",
        "arun_load",
        "compare",
        "latency_percentiles",
        "littles_law_bound",
        "littles_law_explorer",
        "rate_sweep",
        "run_load",
        "sweep",
    ]


def test_importing_the_package_never_imports_locust_or_gevent() -> None:
    code = (
        "import sys, labkit.load, labkit.load.runner, labkit.load.progress\n"
        "bad = [m for m in ('locust', 'gevent', 'labkit.load.locustfile') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_locustfiles_are_standalone() -> None:
    # Locust loads them by path in a fresh process: they may import Locust, never labkit.
    for path in (LOCUSTFILE, TAKEHOME_LOCUSTFILE):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not any(name and name.startswith("labkit") for name in imported), path
