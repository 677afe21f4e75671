"""What a load run measured: figures from raw timings, the Little's-law bound, trust warnings."""

from __future__ import annotations

import html
import os
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Fewer completed requests than this and a p95 is one or two samples: say so.
MIN_REQUESTS = 30
# Above this share of failures the latency figures describe the errors, not the view.
MAX_ERROR_RATE = 0.5
# A Locust process using this much of a core on average is the bottleneck, not the server:
# it is a mean over the run, so the busy moments were at 100% and their timings stretched.
SATURATED_CPU = 85.0
# Tolerated share of open-loop arrivals leaving late before we distrust the clock.
MAX_LATE_SHARE = 0.01
# An open-loop arrival leaving later than this after its slot counts as late.
LATE_MS = 100.0


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


class _Rendered:
    """Shown as a table: HTML and Markdown in Jupyter, plain text in a console."""

    def _table(self) -> _Table:
        raise NotImplementedError

    def _repr_html_(self) -> str:
        return self._table().html()

    def _repr_markdown_(self) -> str:
        return self._table().markdown()

    def __str__(self) -> str:
        return self._table().text()


@dataclass
class LoadResult(_Rendered):
    """The scenario of one load run and what it measured; renders as a table in Jupyter.

    `rps` counts successful answers from the first request sent to the last reply (failures
    included): requests Locust cut off at its stop, still in flight, are not held against the
    server. `window_s` is Locust's own start to stop. `p50_ms`, `p95_ms`, `p99_ms` come from
    the raw time of every answered request, failures included (`timings` holds them all).
    `bound_rps` is Little's law for the scenario (see `littles_law_bound`) and `efficiency`
    is rps / bound_rps. Open loop only: `arrivals` counts scheduled, sent, dropped, late and
    unfinished arrivals. `generator_cpu` is the busiest Locust process's use of a core, in %.
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
        data["warnings"] = list(self.warnings)
        return data

    def describe(self) -> str:
        """One line: the scenario the figures belong to."""
        load = (
            f"open loop, {_num(self.arrival_rate)} arrivals/s"
            if self.mode == "open"
            else f"closed loop, {self.users} users"
        )
        parts = [self.scenario, load]
        if self.wait_s:
            parts.append(f"wait_s {_num(self.wait_s)}")
        parts.append(f"{_num(self.duration_s)} s")
        if self.latency_s is not None:
            parts.append(f"latency_s {_num(self.latency_s)}")
        if self.workers is not None:
            parts.append(f"workers {self.workers}")
        if self.server:
            parts.append(f"server {self.server}")
        parts.append(f"{self.cpus} CPUs")
        return " · ".join(parts)

    def _table(self) -> _Table:
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
            _num(self.rps),
            _num(self.bound_rps),
            _pct(self.efficiency),
            _ms(self.p50_ms),
            _ms(self.p95_ms),
            _ms(self.p99_ms),
            _ms(self.max_ms),
            str(self.requests),
            _errors(self),
            _pct(self.error_rate),
        ]
        title = f"{self.label}: {self.describe()}" if self.label else self.describe()
        return _Table(title, header, [row], self.warnings)

    def plot(self) -> Figure:
        """Plot latency over time beside its distribution."""
        from labkit.load.plots import plot_result

        return plot_result(self)


def trust_warnings(result: LoadResult) -> list[str]:
    """Say why the figures of a run may not mean what they seem to."""
    found = []
    if result.requests < MIN_REQUESTS:
        found.append(
            f"Only {result.requests} requests completed: too few for stable percentiles "
            f"(aim for at least {MIN_REQUESTS}; run longer or with more users)."
        )
    if result.requests and result.error_rate > MAX_ERROR_RATE:
        kinds = ", ".join(f"{k}: {n}" for k, n in result.errors_by_kind.items())
        found.append(
            f"{result.error_rate:.0%} of requests failed ({kinds}): these figures describe "
            "the failures, not the view."
        )
    if result.generator_cpu is not None and result.generator_cpu >= SATURATED_CPU:
        found.append(
            f"The load generator was saturated (Locust used {result.generator_cpu:.0f}% of a "
            "core): the limit measured may be the client's, not the server's."
        )
    if result.efficiency is not None and result.efficiency > 1.1 and result.mode == "closed":
        found.append(
            f"rps is {result.efficiency:.0%} of the Little's-law bound: the latency_s or "
            "workers given don't describe this server."
        )
    arrivals = result.arrivals or {}
    if arrivals.get("dropped"):
        found.append(
            f"{arrivals['dropped']} of {arrivals['scheduled']} arrivals were dropped: "
            f"max_in_flight ({arrivals.get('max_in_flight', '?')}) requests were already "
            "waiting for answers."
        )
    sent = arrivals.get("sent", 0)
    if sent and arrivals.get("late", 0) / sent > MAX_LATE_SHARE:
        found.append(
            f"{arrivals['late']} of {sent} arrivals left more than {LATE_MS:.0f} ms late: the "
            "load generator could not keep its clock, so fewer arrived than asked."
        )
    offered = arrivals.get("scheduled", 0) / result.window_s
    # A server that keeps up still has about offered x latency requests in flight when the run
    # stops (Little's law); on a 4 s run those alone put rps near 0.9 x offered. A queue grew
    # only if arrivals were dropped or more than twice that many were left waiting. The
    # scenario's latency_s, when given, is the service time; a growing queue inflates the mean.
    service_s = result.latency_s or (result.mean_ms or 0) / 1000
    left = arrivals.get("unfinished", 0)
    grew = arrivals.get("dropped", 0) > 0 or left > 2 * offered * service_s
    if result.mode == "open" and offered and result.rps < 0.9 * offered and grew:
        found.append(
            f"The server answered {result.rps:.1f} req/s of {offered:.1f} arriving: a queue "
            f"grew all run ({arrivals.get('unfinished', 0)} requests still waiting at the "
            "end), so latency keeps rising the longer the run."
        )
    return found


@dataclass
class Comparison(_Rendered):
    """Two runs of the same scenario, before and after a change, with ratios."""

    before: LoadResult
    after: LoadResult

    @property
    def rps_ratio(self) -> float | None:
        """How many times more requests per second after (after.rps / before.rps)."""
        return self.after.rps / self.before.rps if self.before.rps else None

    @property
    def p95_ratio(self) -> float | None:
        """How many times lower p95 is after (before.p95_ms / after.p95_ms)."""
        b, a = self.before.p95_ms, self.after.p95_ms
        return b / a if b is not None and a else None

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
        }

    def _table(self) -> _Table:
        b, a = self.before, self.after
        rows = [
            ["p95 latency (p95_ms)", _ms(b.p95_ms), _ms(a.p95_ms), _times(self.p95_ratio, "÷")],
            ["throughput (rps)", _num(b.rps), _num(a.rps), _times(self.rps_ratio, "×")],
            ["bound (bound_rps)", _num(b.bound_rps), _num(a.bound_rps), ""],
            [
                "error rate",
                _pct(b.error_rate),
                _pct(a.error_rate),
                f"{self.error_rate_change * 100:+.1f} pts",
            ],
        ]
        title = f"{b.name} → {a.name}. Before: {b.describe()}. After: {a.describe()}."
        header = ["metric", b.label or "before", a.label or "after", "change"]
        warnings = [f"{r.name}: {w}" for r in (b, a) for w in r.warnings]
        return _Table(title, header, rows, warnings)

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
class Sweep(_Rendered):
    """Runs that differ in one parameter (`users` or `arrival_rate`), for a curve."""

    parameter: str
    results: list[LoadResult]

    @property
    def values(self) -> list[float]:
        return [getattr(r, self.parameter) for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        return {"parameter": self.parameter, "results": [r.to_dict() for r in self.results]}

    def _table(self) -> _Table:
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
                _num(getattr(r, self.parameter)),
                _num(r.rps),
                _num(r.bound_rps),
                _pct(r.efficiency),
                _ms(r.p50_ms),
                _ms(r.p95_ms),
                _pct(r.error_rate),
            ]
            for r in self.results
        ]
        title = f"Sweep over {self.parameter}: " + (
            self.results[0].describe() if self.results else "no runs"
        )
        warnings = [
            f"{self.parameter}={_num(getattr(r, self.parameter))}: {w}"
            for r in self.results
            for w in r.warnings
        ]
        return _Table(title, header, rows, warnings)

    def plot(self) -> Figure:
        """Plot rps and p95 against the swept parameter, with the bound line."""
        from labkit.load.plots import plot_sweep

        return plot_sweep(self)


@dataclass
class _Table:
    """A title, one table and warnings, rendered for Jupyter (HTML, Markdown) or a console."""

    title: str
    header: list[str]
    rows: list[list[str]]
    warnings: list[str]

    def html(self) -> str:
        cell = "<td style='text-align:right'>{}</td>"
        head = "".join(f"<th style='text-align:right'>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(cell.format(html.escape(c)) for c in row) + "</tr>"
            for row in self.rows
        )
        out = (
            f"<div><p><b>{html.escape(self.title)}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
        if self.warnings:
            items = "".join(f"<li>{html.escape(w)}</li>" for w in self.warnings)
            out += f"<p>⚠ warnings:</p><ul style='color:#a33'>{items}</ul>"
        return out + "</div>"

    def markdown(self) -> str:
        lines = [
            f"**{self.title}**",
            "",
            "| " + " | ".join(self.header) + " |",
            "|" + "|".join("---:" for _ in self.header) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += ["", *(f"- ⚠ {w}" for w in self.warnings)] if self.warnings else []
        return "\n".join(lines)

    def text(self) -> str:
        widths = [
            max(len(r[i]) for r in [self.header, *self.rows]) for i in range(len(self.header))
        ]
        lines = [self.title]
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True))
            for r in [self.header, *self.rows]
        ]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}" if value < 0.1 else f"{value:.0%}"


def _times(value: float | None, sign: str) -> str:
    return "—" if value is None else f"{sign}{value:.2f}" if value < 10 else f"{sign}{value:.0f}"


def _errors(result: LoadResult) -> str:
    if not result.errors:
        return "0"
    kinds = ", ".join(f"{k} {n}" for k, n in result.errors_by_kind.items())
    return f"{result.errors} ({kinds})"
