"""Load runs: Locust as a subprocess aimed at loopback, figures from raw timings, bounds beside.

>>> from labkit.load import run_load, compare
>>> before = run_load("http://127.0.0.1:8000", users=50, latency_s=1.0, workers=4)

Never import `labkit.load.locustfile` here or anywhere in the kernel: importing Locust
patches the standard library with gevent and hangs Jupyter. It is passed to Locust by path.
"""

from __future__ import annotations

from labkit.load.explorer import littles_law_explorer
from labkit.load.results import (
    Comparison,
    LoadResult,
    Sweep,
    Timing,
    compare,
    latency_percentiles,
    littles_law_bound,
)
from labkit.load.runner import (
    LOCUSTFILE,
    TAKEHOME_LOCUSTFILE,
    LoadError,
    arun_load,
    rate_sweep,
    run_load,
    sweep,
)
from labkit.load.scenarios import PROMPTS, SCENARIOS, Scenario

__all__ = [
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
