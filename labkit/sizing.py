"""How big the notebooks' demos are: adapted to the machine and to who is running them.

| LAB_SIZE  | who                               | users | duration_s | latency_s |
|-----------|-----------------------------------|-------|------------|-----------|
| quick     | grader, `labkit verify`, CI       | 20    | 4          | 0.5       |
| default   | a learner (Binder: 1 CPU)         | 50    | 12         | 1.0       |
| workshop  | an instructor's live demo         | 200   | 30         | 2.0       |

`LAB_VERIFY=1` (set by `labkit verify`) and `LAB_GRADING=1` (set by `labkit grade`) mean
quick, unless LAB_SIZE says otherwise. With fewer than two
CPUs the default shrinks to 30 users, so the load generator never starves the server.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from labkit.doctor import cpu_count


@dataclass(frozen=True)
class Sizes:
    """The scale of one notebook run; print it to show the scenario."""

    mode: str
    cpus: float
    users: int
    duration_s: float
    latency_s: float
    threads: int  # worker threads of the sync "before" server

    def __str__(self) -> str:
        return (
            f"{self.mode} size: {self.users} users, {self.duration_s:g} s per load run, "
            f"LLM latency {self.latency_s:g} s, {self.threads} sync worker threads, "
            f"{self.cpus:g} CPUs"
        )


def checking() -> bool:
    """Whether this kernel runs for `labkit verify` (LAB_VERIFY=1) or `labkit grade`
    (LAB_GRADING=1), not for a learner."""
    return "1" in (os.environ.get("LAB_VERIFY"), os.environ.get("LAB_GRADING"))


def sizes() -> Sizes:
    """Return the sizes for this run (LAB_SIZE, LAB_VERIFY, CPUs).

    s = sizes(); run_load(url, users=s.users, duration_s=s.duration_s)
    """
    mode = os.environ.get("LAB_SIZE", "").lower() or ("quick" if checking() else "default")
    cpus = cpu_count()
    if mode == "quick":
        return Sizes(mode, cpus, users=20, duration_s=4, latency_s=0.5, threads=4)
    if mode == "workshop":
        return Sizes(mode, cpus, users=200, duration_s=30, latency_s=2.0, threads=4)
    if mode != "default":
        raise ValueError(f"LAB_SIZE={mode!r}: use quick, default or workshop")
    users = 50 if cpus >= 2 else 30
    return Sizes(mode, cpus, users=users, duration_s=12, latency_s=1.0, threads=4)
