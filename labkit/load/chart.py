"""A small live chart of a load run as SVG text: cheap to redraw twice a second, no matplotlib.

rps (blue, left scale) and p95_ms (amber, right scale) over the run's seconds, with the latest
rps, p50, p95, errors and requests in flight written beside them; errors turn the headline red.
`data-updates` counts the redraws, so a browser test can see the chart move.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labkit.load.progress import Snapshot

WIDTH, HEIGHT = 460, 120
LEFT, RIGHT, TOP, BOTTOM = 36, 44, 22, 18
RPS_COLOUR = "#2f6db5"
P95_COLOUR = "#e08a00"
ERROR_COLOUR = "#c62828"
TEXT_COLOUR = "#555555"


def _scale(values: Sequence[float]) -> float:
    """A round top for an axis that holds every value."""
    top = max(values, default=0.0)
    if top <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000):
        if top <= step:
            return float(step)
    return top


def _polyline(points: list[tuple[float, float]], colour: str, dash: str = "") -> str:
    if not points:
        return ""
    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    dashes = f" stroke-dasharray='{dash}'" if dash else ""
    return f"<polyline points='{coords}' fill='none' stroke='{colour}' stroke-width='1.6'{dashes}/>"


def live_chart_svg(history: Sequence[Snapshot], updates: int) -> str:
    """The chart of `history` (snapshots in time order) as an SVG element."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    total = max((s.total_s for s in history), default=1.0) or 1.0
    rps_top = _scale([s.rps for s in history])
    p95_top = _scale([s.p95_ms or 0.0 for s in history])

    def x(elapsed: float) -> float:
        return LEFT + plot_w * min(elapsed / total, 1.0)

    def y(value: float, top: float) -> float:
        return TOP + plot_h * (1 - min(value / top, 1.0))

    rps_line = [(x(s.elapsed_s), y(s.rps, rps_top)) for s in history]
    p95_line = [(x(s.elapsed_s), y(s.p95_ms, p95_top)) for s in history if s.p95_ms is not None]
    last = history[-1] if history else None
    if last is None:
        headline, colour = "waiting for the first answers…", TEXT_COLOUR
    else:
        p50 = "—" if last.p50_ms is None else f"{last.p50_ms:.0f}"
        p95 = "—" if last.p95_ms is None else f"{last.p95_ms:.0f}"
        flight = "—" if last.in_flight is None else str(last.in_flight)
        headline = (
            f"rps {last.rps:.1f} · p50_ms {p50} · p95_ms {p95} · errors {last.errors} · "
            f"in flight {flight}"
        )
        colour = ERROR_COLOUR if last.errors else TEXT_COLOUR
    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' class='labkit-live-chart' "
        f"data-updates='{updates}' width='{WIDTH}' height='{HEIGHT}' "
        f"viewBox='0 0 {WIDTH} {HEIGHT}' font-family='sans-serif' font-size='10'>",
        f"<text x='{LEFT}' y='12' fill='{colour}'>{html.escape(headline)}</text>",
        f"<rect x='{LEFT}' y='{TOP}' width='{plot_w}' height='{plot_h}' fill='none' "
        f"stroke='#cccccc'/>",
        f"<text x='{LEFT - 4}' y='{TOP + 8}' text-anchor='end' fill='{RPS_COLOUR}'>"
        f"{rps_top:g}</text>",
        f"<text x='{LEFT - 4}' y='{TOP + plot_h}' text-anchor='end' fill='{RPS_COLOUR}'>0</text>",
        f"<text x='{WIDTH - RIGHT + 4}' y='{TOP + 8}' fill='{P95_COLOUR}'>{p95_top:g} ms</text>",
        f"<text x='{LEFT}' y='{HEIGHT - 4}' fill='{RPS_COLOUR}'>— rps</text>",
        f"<text x='{LEFT + 50}' y='{HEIGHT - 4}' fill='{P95_COLOUR}'>- - p95_ms</text>",
        f"<text x='{WIDTH - RIGHT}' y='{HEIGHT - 4}' text-anchor='end' fill='{TEXT_COLOUR}'>"
        f"{total:g} s</text>",
        _polyline(rps_line, RPS_COLOUR),
        _polyline(p95_line, P95_COLOUR, "4 3"),
        "</svg>",
    ]
    return "".join(parts)
