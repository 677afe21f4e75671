"""Figures of load runs: latency over time beside its distribution, comparisons, sweeps.

Figures are `LabFigure`s, built without pyplot, so nothing lingers in pyplot's global state
between cells; each renders itself as a PNG, so a cell that returns one shows an image in a
fresh kernel too (IPython draws a bare `Figure` only once its inline backend is active).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from labkit.load.results import Comparison, LoadResult, Sweep

OK_COLOR = "#1f77b4"
ERROR_COLOR = "#d62728"
BOUND_COLOR = "#555555"


class LabFigure(Figure):
    """A matplotlib Figure that Jupyter shows as a PNG, whatever backend is active."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(**options: Any) -> LabFigure:
    """A LabFigure with constrained layout; `options` go to Figure (figsize, ...)."""
    return LabFigure(layout="constrained", **options)


def plot_result(result: LoadResult) -> Figure:
    """Latency of every request over the run (left) and its distribution (right)."""
    fig = new_figure(figsize=(11, 4))
    over_time, distribution = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    _latency_over_time(over_time, result)
    _distribution(distribution, result)
    fig.suptitle(_title(result), fontsize=10, color=ERROR_COLOR if result.failed else "black")
    return fig


def _latency_over_time(ax: Axes, result: LoadResult) -> None:
    timings = result.timings
    origin = timings[0].start if timings else 0.0
    for ok, color, marker, name in (
        (True, OK_COLOR, ".", "ok"),
        (False, ERROR_COLOR, "x", "error"),
    ):
        chosen = [t for t in timings if t.ok is ok]
        if chosen:
            ax.scatter(
                [t.start - origin for t in chosen],
                [t.ms for t in chosen],
                s=8,
                color=color,
                marker=marker,
                alpha=0.6,
                linewidths=1,
                label=name,
            )
    for key, style in (("p50_ms", ":"), ("p95_ms", "--")):
        value = getattr(result, key)
        if value is not None:
            ax.axhline(
                value, color=BOUND_COLOR, linestyle=style, linewidth=1, label=f"{key} {value:.0f}"
            )
    if result.latency_s:
        ax.axhline(
            result.latency_s * 1000,
            color="#2ca02c",
            linewidth=1,
            label=f"latency_s {result.latency_s:g}",
        )
    ax.set_xlabel("request start (s into the run)")
    ax.set_ylabel("response time (ms)")
    ax.set_ylim(bottom=0)
    if timings:
        ax.legend(loc="upper left", fontsize=8)


def _distribution(ax: Axes, result: LoadResult) -> None:
    values = sorted(t.ms for t in result.timings)
    if not values:
        ax.text(0.5, 0.5, "no requests completed", ha="center", va="center", transform=ax.transAxes)
        return
    ax.hist(values, bins=min(50, max(5, len(values) // 5)), color=OK_COLOR, alpha=0.5)
    ax.set_xlabel("response time (ms)")
    ax.set_ylabel("requests")
    ecdf = ax.twinx()
    ecdf.plot(
        values, [(i + 1) / len(values) for i in range(len(values))], color="black", linewidth=1
    )
    ecdf.set_ylim(0, 1.02)
    ecdf.set_ylabel("share of requests at or below")
    for key in ("p50_ms", "p95_ms", "p99_ms"):
        value = getattr(result, key)
        if value is not None:
            ax.axvline(value, color=BOUND_COLOR, linestyle="--", linewidth=1)
            ax.annotate(
                key,
                (value, 1),
                xycoords=("data", "axes fraction"),
                rotation=90,
                va="top",
                ha="right",
                fontsize=8,
            )


def plot_comparison(comparison: Comparison) -> Figure:
    """Both latency distributions as ECDFs (left) and both throughputs with bounds (right)."""
    fig = new_figure(figsize=(11, 4))
    ecdf, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    runs = [comparison.before, comparison.after]
    names = [r.label or which for r, which in zip(runs, ("before", "after"), strict=True)]
    for result, name, color in zip(runs, names, (ERROR_COLOR, OK_COLOR), strict=True):
        values = sorted(t.ms for t in result.timings)
        if values:
            ecdf.plot(
                values,
                [(i + 1) / len(values) for i in range(len(values))],
                color=color,
                label=f"{name}: p95_ms {result.p95_ms:.0f}",
            )
    ecdf.axhline(0.95, color=BOUND_COLOR, linestyle=":", linewidth=1)
    ecdf.set_xlabel("response time (ms)")
    ecdf.set_ylabel("share of requests at or below")
    ecdf.set_ylim(0, 1.02)
    ecdf.legend(loc="lower right", fontsize=8)
    bars.bar(names, [r.rps for r in runs], color=[ERROR_COLOR, OK_COLOR], alpha=0.7, label="rps")
    for x, result in enumerate(runs):
        if result.bound_rps is not None:
            bars.hlines(
                result.bound_rps,
                x - 0.4,
                x + 0.4,
                color=BOUND_COLOR,
                linestyle="--",
                label="bound_rps" if x == 0 else None,
            )
    bars.set_ylabel("requests per second")
    bars.legend(fontsize=8)
    if comparison.failure:
        fig.suptitle(_wrap(comparison.failure), fontsize=9, color=ERROR_COLOR)
    else:
        fig.suptitle(_wrap(str(comparison).splitlines()[0], 160), fontsize=9)
    return fig


def plot_sweep(sweep: Sweep) -> Figure:
    """rps against the swept parameter with the bound line (left); p95 latency (right)."""
    fig = new_figure(figsize=(11, 4))
    rate, latency = fig.subplots(1, 2)
    xs = sweep.values
    rate.plot(xs, [r.rps for r in sweep.results], marker="o", color=OK_COLOR, label="rps")
    bounds = [
        (x, r.bound_rps) for x, r in zip(xs, sweep.results, strict=True) if r.bound_rps is not None
    ]
    if bounds:
        rate.plot(
            [b[0] for b in bounds],
            [b[1] for b in bounds],
            linestyle="--",
            color=BOUND_COLOR,
            label="bound_rps (Little's law)",
        )
    rate.set_xlabel(sweep.parameter)
    rate.set_ylabel("requests per second")
    rate.set_ylim(bottom=0)
    rate.legend(fontsize=8)
    for key, style in (("p50_ms", ":"), ("p95_ms", "-")):
        points = [
            (x, getattr(r, key))
            for x, r in zip(xs, sweep.results, strict=True)
            if getattr(r, key) is not None
        ]
        latency.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            marker="o",
            linestyle=style,
            color=ERROR_COLOR,
            label=key,
        )
    latency.set_xlabel(sweep.parameter)
    latency.set_ylabel("response time (ms)")
    latency.set_ylim(bottom=0)
    latency.legend(fontsize=8)
    if sweep.results:
        failed = [r for r in sweep.results if r.failed]
        title = f"Sweep over {sweep.parameter}: {sweep.results[0].scenario}"
        if failed:
            title = f"{len(failed)} of {len(sweep.results)} runs failed. {title}"
        fig.suptitle(_wrap(title, 150), fontsize=10, color=ERROR_COLOR if failed else "black")
    return fig


def _wrap(text: str, width: int = 130) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _title(result: LoadResult) -> str:
    if result.failure:
        head = f"{result.label}: " if result.label else ""
        return _wrap(f"{head}{result.failure}")
    p95 = "—" if result.p95_ms is None else f"{result.p95_ms:.0f}"
    bound = "" if result.bound_rps is None else f" of bound_rps {result.bound_rps:.1f}"
    head = f"{result.label}: " if result.label else ""
    return f"{_wrap(head + result.describe(), 150)}\nrps {result.rps:.1f}{bound} · p95_ms {p95}"
