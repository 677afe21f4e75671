"""The concurrency timeline: one bar per request, waiting and served parts in two colours.

A sync server with 4 threads draws a staircase (four bars at a time, the rest waiting); an
async one draws bars that all overlap. The picture makes blocking visible at a glance.

    compare_timelines(before.timings, after.timings, titles=("sync, 4 threads", "async"))
"""

from __future__ import annotations

import textwrap
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["compare_timelines", "overlap", "plot_timeline", "summary"]

WAITING_COLOUR = "#f2a541"  # amber: time spent queued, the cost of blocking
SERVED_COLOUR = "#2f6db5"  # blue: time the app spent on the request
FAILED_COLOUR = "#c62828"  # red: a title that says the requests failed
# Waits shorter than this are accept/dispatch overhead, not queueing worth pointing out.
WAIT_THRESHOLD_S = 0.01


class _Span(NamedTuple):
    accepted_at: float
    started_at: float
    finished_at: float
    status: int | None = None  # the response's status, when the record has one


def _spans(timings: Iterable[Any]) -> list[_Span]:
    """Read `accepted_at` / `started_at` / `finished_at` from records or mappings, sorted."""
    spans = []
    for record in timings:
        get = record.get if isinstance(record, Mapping) else record.__getattribute__
        try:
            span = _Span(float(get("accepted_at")), float(get("started_at")),
                         float(get("finished_at")), _status(record))  # fmt: skip
        except (AttributeError, KeyError, TypeError) as exc:
            raise TypeError(
                f"A timing record needs accepted_at, started_at and finished_at; got {record!r}. "
                "Pass server.timings (or dicts with those keys)."
            ) from exc
        spans.append(span)
    return sorted(spans, key=lambda span: span[:3])  # by time; status may be missing


def _status(record: Any) -> int | None:
    status = (
        record.get("status") if isinstance(record, Mapping) else getattr(record, "status", None)
    )
    return None if status is None else int(status)


def _failures(spans: Sequence[_Span]) -> str | None:
    """Say first when most requests failed: the bars then show failures, not the view."""
    failed = Counter(s.status for s in spans if s.status is not None and not 100 <= s.status < 400)
    n = sum(failed.values())
    if not spans or n * 2 <= len(spans):
        return None
    codes = ", ".join(f"{code or 'no response'} ×{count}" for code, count in failed.most_common())
    return (
        f"{n} of {len(spans)} requests failed ({codes}): these bars show failures, not the "
        "view serving."
    )


def overlap(timings: Iterable[Any]) -> int:
    """The most requests being served (started, not yet finished) at the same moment.

    For example:

        overlap(server.timings)  # 4 for a 4-thread sync server, ~20 for async under 20 users
    """
    return _peak(_spans(timings))


def _peak(spans: Sequence[_Span]) -> int:
    # A sweep over start (+1) and finish (-1) events; at equal times finishes sort first, so
    # a request that starts the instant another ends does not count as overlapping it.
    events = sorted(
        [(span.started_at, 1) for span in spans] + [(span.finished_at, -1) for span in spans]
    )
    busy = peak = 0
    for _, step in events:
        busy += step
        peak = max(peak, busy)
    return peak


def summary(timings: Iterable[Any]) -> str:
    """One line on what the timeline shows: span, peak overlap, and who waited how long.

    For example:

        summary(before.timings)
        # '12 requests over 1.52 s; at most 4 served at once; 8 waited (longest 1.01 s).'
    """
    return _summary(_spans(timings))


def _summary(spans: Sequence[_Span]) -> str:
    if not spans:
        return "No requests recorded: send some requests, then read server.timings."
    elapsed = max(s.finished_at for s in spans) - spans[0].accepted_at
    waits = [s.started_at - s.accepted_at for s in spans]
    waited = [w for w in waits if w > WAIT_THRESHOLD_S]
    wait_text = f"{len(waited)} waited (longest {max(waits):.2f} s)" if waited else "none waited"
    text = (
        f"{len(spans)} requests over {elapsed:.2f} s; at most {_peak(spans)} "
        f"served at once; {wait_text}."
    )
    failures = _failures(spans)
    return f"{failures} {text}" if failures else text


def plot_timeline(
    timings: Iterable[Any], title: str = "Requests over time", ax: Axes | None = None
) -> Figure:
    """Draw one bar per request, by acceptance time: waiting in amber, served in blue.

    For example:

        plot_timeline(server.timings, title="sync view, 4 threads")
    """
    spans = _spans(timings)
    if ax is None:
        figure, ax = _figure(rows=[len(spans)])
    else:
        figure = ax.get_figure()  # type: ignore[assignment]
    _draw(ax, spans, title)
    return figure  # type: ignore[return-value]


def compare_timelines(
    before: Iterable[Any],
    after: Iterable[Any],
    titles: tuple[str, str] = ("before", "after"),
) -> Figure:
    """Two timelines, one above the other on the same time scale.

    For example:

        compare_timelines(before.timings, after.timings, titles=("sync", "async"))
    """
    first, second = _spans(before), _spans(after)
    figure, top, bottom = _figure(rows=[len(first), len(second)])
    _draw(top, first, titles[0])
    _draw(bottom, second, titles[1])
    return figure


def _figure(rows: list[int]) -> tuple[Any, ...]:
    """A figure sized for the bars, outside pyplot, that Jupyter shows as a PNG."""
    from labkit.load.plots import new_figure

    heights = [min(max(1.6, 0.22 * n + 1.0), 6.0) for n in rows]
    figure = new_figure(figsize=(9, sum(heights) + 0.6))
    axes = figure.subplots(
        len(rows), 1, sharex=True, squeeze=False, gridspec_kw={"height_ratios": heights}
    )
    return (figure, *axes[:, 0])


def _draw(ax: Axes, spans: list[_Span], title: str) -> None:
    from matplotlib.ticker import MaxNLocator

    if not spans:
        ax.set_title(f"{title}: no requests recorded")
        ax.set_yticks([])
        return
    origin = spans[0].accepted_at
    rows = range(len(spans))
    ax.barh(
        rows, [s.started_at - s.accepted_at for s in spans],
        left=[s.accepted_at - origin for s in spans],
        color=WAITING_COLOUR, height=0.8, label="waiting",
    )  # fmt: skip
    ax.barh(
        rows, [s.finished_at - s.started_at for s in spans],
        left=[s.started_at - origin for s in spans],
        color=SERVED_COLOUR, height=0.8, label="served",
    )  # fmt: skip
    ax.set_ylim(len(spans) - 0.5, -0.5)  # first request on top: a staircase reads downward
    ax.set_ylabel("request")
    ax.set_xlabel("seconds since the first request arrived")
    ax.xaxis.set_tick_params(labelbottom=True)
    failures = _failures(spans)
    ax.set_title(
        "\n".join(textwrap.wrap(f"{title}: {_summary(spans)}", 110)),
        fontsize=10,
        loc="left",
        color=FAILED_COLOUR if failures else "black",
    )
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    # Upper right stays empty in both shapes: a staircase runs down-right, overlap runs down.
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
