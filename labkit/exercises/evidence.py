"""Measurements checks use as evidence, with the learner-facing sentences that report them.

log = ...                                   # a labkit.queries.QueryLog
expect_queries(log, at_most=2)              # Incorrect: "12 queries, expected at most 2:" + SQL

run = await overlap(lambda: view(request), n=20)
expect_overlap(run)                         # Incorrect: "3 of 20 concurrent requests overlapped"
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from labkit.exercises.outcomes import Incorrect


class QueryLogLike(Protocol):
    n_queries: int

    def numbered(self, limit: int = 20) -> str: ...


def expect_queries(log: QueryLogLike, at_most: int) -> str:
    """Raise Incorrect with the numbered SQL if `log` ran more than `at_most` queries."""
    n = log.n_queries
    if n > at_most:
        raise Incorrect(
            f"{n} {'query' if n == 1 else 'queries'}, expected at most {at_most}:",
            evidence=log.numbered(),
        )
    return f"{n} {'query' if n == 1 else 'queries'} (at most {at_most} allowed)."


@dataclass
class Overlap:
    """`n` calls started together: how many ran at the same time as another one."""

    n: int
    overlapped: int
    elapsed_s: float
    spans: list[tuple[float, float]] = field(default_factory=list)
    results: list[Any] = field(default_factory=list)

    @property
    def slowest_s(self) -> float:
        return max((end - start for start, end in self.spans), default=0.0)

    def __str__(self) -> str:
        return (
            f"{self.overlapped} of {self.n} concurrent requests overlapped "
            f"({self.n} calls took {self.elapsed_s:.2f} s; "
            f"the slowest alone {self.slowest_s:.2f} s)"
        )


async def overlap(call: Callable[[], Awaitable[Any]], n: int = 20) -> Overlap:
    """Start `n` awaitables from `call()` at once and measure which ones overlapped in time.

    A view that blocks the event loop (a sync sleep or HTTP call inside `async def`) runs its
    calls one after another, so none overlaps; a non-blocking one overlaps all of them.
    """
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * n
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        start = time.perf_counter()
        results[i] = await call()
        spans[i] = (start, time.perf_counter())

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    overlapped = sum(
        any(j != i and s < spans[j][1] and spans[j][0] < e for j in range(n))
        for i, (s, e) in enumerate(spans)
    )
    return Overlap(n, overlapped, elapsed, spans, results)


def expect_overlap(run: Overlap, at_least: float = 0.9) -> str:
    """Raise Incorrect unless at least `at_least` of the calls overlapped."""
    if run.overlapped < at_least * run.n:
        raise Incorrect(f"{run}: your view still blocks the event loop.")
    return f"{run}."
