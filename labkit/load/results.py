"""What a load run measured: figures from raw timings, the Little's-law bound, trust warnings."""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labkit.load.tables import Rendered, Table, errors_text, ms, num, pct, times
from labkit.load.trust import failed, failure, trust_warnings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from labkit.load.machine import MachineLoad


@dataclass(frozen=True, slots=True)
class Timing:
    """One request as the load generator saw it."""

    start: float  # epoch seconds
    ms: float
    status: int
    kind: str | None  # None when it succeeded, else "timeout", "refused", "http_500", ...
    bytes: int
    name: str
    repeated: bool = False
    lag_ms: float | None = None  # open loop: how late it left compared with its slot

    @property
    def ok(self) -> bool:
        return self.kind is None

    @property
    def end(self) -> float:
        return self.start + self.ms / 1000


def latency_percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """Return p50_ms, p95_ms and p99_ms of raw values (linear interpolation, inclusive)."""
    if not values:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    if len(values) == 1:
        only = float(values[0])
        return {"p50_ms": only, "p95_ms": only, "p99_ms": only}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50_ms": cuts[49], "p95_ms": cuts[94], "p99_ms": cuts[98]}


def littles_law_bound(
    *,
    latency_s: float,
    users: int | None = None,
    workers: int | None = None,
    arrival_rate: float | None = None,
    wait_s: float = 0.0,
) -> float:
    """Return the most requests per second the scenario allows (Little's law: rate = L / W).

    Closed loop: each user has one request in flight or is waiting, so at most
    users / (latency_s + wait_s); a server with `workers` slots serves at most
    workers / latency_s. Open loop: no more than arrive, nor than the workers can finish.

    >>> littles_law_bound(users=50, latency_s=1.0, workers=4)
    4.0
    """
    if latency_s <= 0:
        raise ValueError(f"latency_s must be positive, got {latency_s}.")
    server_cap = workers / latency_s if workers else float("inf")
    if arrival_rate is not None:
        return min(float(arrival_rate), server_cap)
    if users is None:
        raise ValueError("A closed-loop bound needs users; an open-loop one needs arrival_rate.")
    return min(users / (latency_s + wait_s), server_cap)


def _answer_rate(records: list, window_s: float) -> float:
    """Successful answers per second, from the first request sent to the last reply of any kind.

    Failures (timeouts included) end the span too, so a run whose late requests all time out
    is not credited with the rate of its few early answers.
    """
    answered = sum(1 for t in records if t.kind is None)
    if not answered:
        return 0.0
    span = max(t.end for t in records) - min(t.start for t in records)
    return answered / span if span > 0 else answered / window_s


@dataclass
class LoadResult(Rendered):
    """The scenario of one load run and what it measured; renders as a table in Jupyter.

    `rps` counts successful answers from the first request sent to the last reply (failures
    included): requests Locust cut off at its stop, still in flight, are not held against the
    server. `window_s` is Locust's own start to stop. `p50_ms`, `p95_ms`, `p99_ms` come from
    the raw time of every answered request, failures included (`timings` holds them all).
    `bound_rps` is Little's law for the scenario (see `littles_law_bound`) and `efficiency`
    is rps / bound_rps. Open loop only: `arrivals` counts scheduled, sent, dropped, late and
    unfinished arrivals. `generator_cpu` is the busiest Locust process's use of a core, in %.
    `machine` is what the whole machine did meanwhile (this lab's CPU, other processes', the
    load average); a run far below its bound on a busy machine says so in its warnings.
    A run that mostly failed says so first (`failure`) and shows no efficiency.
    """

    scenario: str
    mode: str
    users: int | None
    arrival_rate: float | None
    duration_s: float
    requests: int
    errors: int
    error_rate: float
    errors_by_kind: dict[str, int]
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    mean_ms: float | None
    window_s: float
    latency_s: float | None = None
    workers: int | None = None
    server: str | None = None
    label: str | None = None
    wait_s: float = 0.0
    processes: int = 1
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    bound_rps: float | None = None
    efficiency: float | None = None
    arrivals: dict[str, int] | None = None
    generator_cpu: float | None = None
    machine: MachineLoad | None = None
    warnings: list[str] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list, repr=False)

    @classmethod
    def from_timings(
        cls,
        timings: Iterable[Timing],
        *,
        scenario: str,
        mode: str = "closed",
        users: int | None = None,
        arrival_rate: float | None = None,
        duration_s: float,
        window: tuple[float, float] | None = None,
        wait_s: float = 0.0,
        latency_s: float | None = None,
        workers: int | None = None,
        server: str | None = None,
        label: str | None = None,
        processes: int = 1,
        arrivals: dict[str, int] | None = None,
        generator_cpu: float | None = None,
        machine: MachineLoad | None = None,
        notes: Iterable[str] = (),
    ) -> LoadResult:
        """Compute every figure from raw timings; `window` is (start, stop) in epoch seconds."""
        records = sorted(timings, key=lambda t: t.start)
        if window is None:
            window = (
                (records[0].start, max(t.end for t in records)) if records else (0.0, duration_s)
            )
        window_s = max(window[1] - window[0], 1e-9)
        kinds = Counter(t.kind for t in records if t.kind is not None)
        errors = sum(kinds.values())
        # Percentiles cover every answered request, failures included, as Locust reports them;
        # the error-rate warning flags runs where that makes them unrepresentative.
        values = [t.ms for t in records]
        bound = None
        if latency_s:
            bound = littles_law_bound(
                latency_s=latency_s,
                users=users,
                workers=workers,
                wait_s=wait_s,
                arrival_rate=arrival_rate if mode == "open" else None,
            )
        elif mode == "open" and arrival_rate:
            bound = float(arrival_rate)
        rps = _answer_rate(records, window_s)
        result = cls(
            scenario=scenario,
            mode=mode,
            users=users,
            arrival_rate=arrival_rate,
            duration_s=duration_s,
            requests=len(records),
            errors=errors,
            error_rate=errors / len(records) if records else 0.0,
            errors_by_kind=dict(kinds.most_common()),
            rps=rps,
            **latency_percentiles(values),
            max_ms=max(values) if values else None,
            mean_ms=statistics.fmean(values) if values else None,
            window_s=window_s,
            latency_s=latency_s,
            workers=workers,
            server=server,
            label=label,
            wait_s=wait_s,
            processes=processes,
            bound_rps=bound,
            efficiency=rps / bound if bound else None,
            arrivals=arrivals,
            generator_cpu=generator_cpu,
            machine=machine,
            timings=records,
        )
        result.warnings = [*notes, *trust_warnings(result)]
        return result

    @property
    def name(self) -> str:
        """The label if given, else the server, else the scenario."""
        return self.label or self.server or self.scenario

    def to_dict(self) -> dict[str, Any]:
        """Return the scenario and figures (not the timings) as JSON-able data."""
        data = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "timings"}
        data["errors_by_kind"] = dict(self.errors_by_kind)
        data["machine"] = self.machine.to_dict() if self.machine else None
        data["failure"] = self.failure
        data["warnings"] = list(self.warnings)
        return data

    @property
    def failed(self) -> bool:
        """Nothing answered, or most requests failed: its figures describe the failures."""
        return failed(self)

    @property
    def failure(self) -> str | None:
        """One line saying how the run failed, or None if it measured the view."""
        return failure(self)

    def describe(self) -> str:
        """One line: the scenario the figures belong to."""
        load = (
            f"open loop, {num(self.arrival_rate)} arrivals/s"
            if self.mode == "open"
            else f"closed loop, {self.users} users"
        )
        parts = [self.scenario, load]
        if self.wait_s:
            parts.append(f"wait_s {num(self.wait_s)}")
        parts.append(f"{num(self.duration_s)} s")
        if self.latency_s is not None:
            parts.append(f"latency_s {num(self.latency_s)}")
        if self.workers is not None:
            parts.append(f"workers {self.workers}")
        if self.server:
            parts.append(f"server {self.server}")
        parts.append(f"{self.cpus} CPUs")
        return " · ".join(parts)

    def _table(self) -> Table:
        header = [
            "rps",
            "bound_rps",
            "efficiency",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "requests",
            "errors",
            "error_rate",
        ]
        row = [
            num(self.rps),
            num(self.bound_rps),
            "—" if self.failed else pct(self.efficiency),
            ms(self.p50_ms),
            ms(self.p95_ms),
            ms(self.p99_ms),
            ms(self.max_ms),
            str(self.requests),
            errors_text(self),
            pct(self.error_rate),
        ]
        title = f"{self.label}: {self.describe()}" if self.label else self.describe()
        notes = [f"Machine during the run: {self.machine.figures()}."] if self.machine else []
        alerts = [self.failure] if self.failure else []
        return Table(title, header, [row], self.warnings, alerts=alerts, notes=notes)

    def plot(self) -> Figure:
        """Plot latency over time beside its distribution."""
        from labkit.load.plots import plot_result

        return plot_result(self)


@dataclass
class Comparison(Rendered):
    """Two runs of the same scenario, before and after a change, with ratios."""

    before: LoadResult
    after: LoadResult

    @property
    def failure(self) -> str | None:
        """Why there is no comparison: a run that mostly failed, named first; else None."""
        gone = [(which, r) for which, r in (("before", self.before), ("after", self.after))]
        lines = [f"{r.name} ({which}): {r.failure}" for which, r in gone if r.failed]
        if not lines:
            return None
        return "No comparison: " + " ".join(lines)

    @property
    def rps_ratio(self) -> float | None:
        """How many times more requests per second after (after.rps / before.rps).

        None when either run failed: a ratio to a run of errors means nothing.
        """
        if self.failure or not self.before.rps:
            return None
        return self.after.rps / self.before.rps

    @property
    def p95_ratio(self) -> float | None:
        """How many times lower p95 is after (before.p95_ms / after.p95_ms); None on failure."""
        b, a = self.before.p95_ms, self.after.p95_ms
        if self.failure or b is None or not a:
            return None
        return b / a

    @property
    def error_rate_change(self) -> float:
        """after.error_rate - before.error_rate (negative is better)."""
        return self.after.error_rate - self.before.error_rate

    def to_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "rps_ratio": self.rps_ratio,
            "p95_ratio": self.p95_ratio,
            "error_rate_change": self.error_rate_change,
            "failure": self.failure,
        }

    def _table(self) -> Table:
        b, a = self.before, self.after
        rows = [
            ["p95 latency (p95_ms)", ms(b.p95_ms), ms(a.p95_ms), times(self.p95_ratio, "÷")],
            ["throughput (rps)", num(b.rps), num(a.rps), times(self.rps_ratio, "×")],
            ["bound (bound_rps)", num(b.bound_rps), num(a.bound_rps), ""],
            [
                "error rate",
                pct(b.error_rate),
                pct(a.error_rate),
                f"{self.error_rate_change * 100:+.1f} pts",
            ],
        ]
        title = f"{b.name} → {a.name}. Before: {b.describe()}. After: {a.describe()}."
        header = ["metric", b.label or "before", a.label or "after", "change"]
        warnings = [f"{r.name}: {w}" for r in (b, a) for w in r.warnings]
        alerts = [self.failure] if self.failure else []
        return Table(title, header, rows, warnings, alerts=alerts)

    def plot(self) -> Figure:
        """Plot both latency distributions and both throughputs against their bounds."""
        from labkit.load.plots import plot_comparison

        return plot_comparison(self)


def compare(before: LoadResult, after: LoadResult) -> Comparison:
    """Put two runs side by side: p95 latency, throughput and error rate, with ratios.

    >>> compare(run_load(url, users=50), run_load(url, users=50))  # doctest: +SKIP
    """
    return Comparison(before, after)


@dataclass
class Sweep(Rendered):
    """Runs that differ in one parameter (`users` or `arrival_rate`), for a curve."""

    parameter: str
    results: list[LoadResult]

    @property
    def values(self) -> list[float]:
        return [getattr(r, self.parameter) for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "results": [r.to_dict() for r in self.results]}

    def _table(self) -> Table:
        header = [
            self.parameter,
            "rps",
            "bound_rps",
            "efficiency",
            "p50_ms",
            "p95_ms",
            "error_rate",
        ]
        rows = [
            [
                num(getattr(r, self.parameter)),
                num(r.rps),
                num(r.bound_rps),
                "—" if r.failed else pct(r.efficiency),
                ms(r.p50_ms),
                ms(r.p95_ms),
                pct(r.error_rate),
            ]
            for r in self.results
        ]
        title = f"Sweep over {self.parameter}: " + (
            self.results[0].describe() if self.results else "no runs"
        )
        warnings = [
            f"{self.parameter}={num(getattr(r, self.parameter))}: {w}"
            for r in self.results
            for w in r.warnings
        ]
        alerts = [
            f"{self.parameter}={num(getattr(r, self.parameter))}: {r.failure}"
            for r in self.results
            if r.failure
        ]
        return Table(title, header, rows, warnings, alerts=alerts)

    def plot(self) -> Figure:
        """Plot rps and p95 against the swept parameter, with the bound line."""
        from labkit.load.plots import plot_sweep

        return plot_sweep(self)
