"""Live progress of a load run: a small dashboard in Jupyter, one rewritten line on a console.

In Jupyter the dashboard is a progress bar, a status line and a live chart (rps and p95 over
the run, errors and requests in flight) that update in place while Locust runs. It is shown
with a display id; when the run ends the display is rewritten as a bundle holding the widget,
the final line as text and the chart as an SVG image, so JupyterLab keeps the live widget
(across a page reload too, while the kernel lives) and nbconvert or the grader, which have no
widget manager, show the text and the picture instead.
"""

from __future__ import annotations

import html
import sys
import uuid
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from labkit.load.chart import live_chart_svg
from labkit.load.results import Timing, latency_percentiles

if TYPE_CHECKING:
    from labkit.load.results import LoadResult

# Live figures cover the last few seconds, so they show where the run is now,
# not an average that hides a queue building up.
WINDOW_S = 3.0
# ipywidgets' bar styles, by meaning: errors red, warnings amber, success green.
OUTCOMES = ("success", "warning", "danger")


@dataclass
class Snapshot:
    """What the run looks like so far."""

    elapsed_s: float
    total_s: float
    requests: int
    errors: int
    rps: float
    p95_ms: float | None
    p50_ms: float | None = None
    in_flight: int | None = None  # sent and not yet answered, as the generators last said

    def line(self) -> str:
        p95 = "—" if self.p95_ms is None else f"{self.p95_ms:.0f}"
        flight = "" if self.in_flight is None else f"  in flight {self.in_flight}"
        return (
            f"{self.elapsed_s:4.0f}/{self.total_s:.0f} s  {self.requests} requests  "
            f"{self.rps:.1f} rps  p95_ms {p95}  errors {self.errors}{flight}"
        )


class LiveStats:
    """Fold records in as they arrive; report rps and p95 over the last WINDOW_S seconds."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.recent: deque[Timing] = deque()
        self.flight: dict[int, int] = {}  # generator pid -> requests in flight

    def in_flight(self, events: list[dict[str, Any]]) -> None:
        """Take the generators' latest in-flight counts from their `flight` events."""
        for event in events:
            if event.get("e") == "flight":
                self.flight[int(event["p"])] = int(event["n"])

    def add(self, records: list[Timing]) -> None:
        for record in records:
            self.requests += 1
            self.errors += not record.ok
            self.recent.append(record)

    def snapshot(self, now: float, elapsed_s: float, total_s: float) -> Snapshot:
        while self.recent and self.recent[0].end < now - WINDOW_S:
            self.recent.popleft()
        window = min(WINDOW_S, max(elapsed_s, 0.5))
        ok = sum(1 for r in self.recent if r.ok)
        cuts = latency_percentiles([r.ms for r in self.recent])
        in_flight = sum(self.flight.values()) if self.flight else None
        return Snapshot(
            elapsed_s,
            total_s,
            self.requests,
            self.errors,
            ok / window,
            cuts["p95_ms"],
            cuts["p50_ms"],
            in_flight,
        )


def outcome(result: LoadResult) -> str:
    """The bar's colour for a finished run: danger if any failed, warning if warned, success."""
    if result.errors or result.failed:
        return "danger"
    return "warning" if result.warnings else "success"


class Progress(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def close(self, summary: str, outcome: str = "success") -> None: ...


class NullProgress:
    """Show nothing (progress=False)."""

    def update(self, snapshot: Snapshot) -> None:
        pass

    def close(self, summary: str, outcome: str = "success") -> None:
        pass


class TextProgress:
    """One line on stderr, rewritten in place with a carriage return."""

    width = 24

    def __init__(self, title: str, stream: TextIO | None = None) -> None:
        self.title = title
        self.stream = stream if stream is not None else sys.stderr
        self.last = 0

    def _write(self, text: str) -> None:
        # Pad over the previous line's tail, since a carriage return doesn't erase it.
        self.stream.write("\r" + text.ljust(self.last))
        self.stream.flush()
        self.last = len(text)

    def update(self, snapshot: Snapshot) -> None:
        done = min(1.0, snapshot.elapsed_s / snapshot.total_s) if snapshot.total_s else 1.0
        filled = int(done * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self._write(f"{self.title} [{bar}] {snapshot.line()}")

    def close(self, summary: str, outcome: str = "success") -> None:
        self._write(f"{self.title}: {summary}")
        self.stream.write("\n")
        self.stream.flush()


class WidgetProgress:
    """A live dashboard: progress bar, status line and chart, updated in place."""

    steps = 200

    def __init__(self, title: str) -> None:
        import ipywidgets
        from IPython.display import display

        self.title = html.escape(title)
        self.history: list[Snapshot] = []
        self.bar = ipywidgets.IntProgress(
            value=0, min=0, max=self.steps, layout=ipywidgets.Layout(width="260px")
        )
        # The line sits under the bar, so a long summary never wraps beside it.
        self.label = ipywidgets.HTML(value=f"<b>{self.title}</b>: starting Locust…")
        self.chart = ipywidgets.HTML(value=live_chart_svg([], 0))
        self.box = ipywidgets.VBox([self.bar, self.label, self.chart])
        self.box.add_class("labkit-live")
        self.display_id = uuid.uuid4().hex
        display(self._bundle("starting Locust…"), raw=True, display_id=self.display_id)

    def _bundle(self, text: str, svg: str | None = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": self.box.model_id,
            },
            "text/plain": f"{html.unescape(self.title)}: {text}",
        }
        if svg:
            bundle["image/svg+xml"] = svg
        return bundle

    def update(self, snapshot: Snapshot) -> None:
        done = min(1.0, snapshot.elapsed_s / snapshot.total_s) if snapshot.total_s else 1.0
        self.bar.value = int(done * self.steps)
        if snapshot.errors:
            self.bar.bar_style = "danger"
        self.label.value = f"<b>{self.title}</b>: {html.escape(snapshot.line())}"
        if snapshot.requests or self.history:
            self.history.append(snapshot)
            self.chart.value = live_chart_svg(self.history, len(self.history))

    def close(self, summary: str, outcome: str = "success") -> None:
        from IPython.display import update_display

        self.bar.value = self.steps
        self.bar.bar_style = outcome if outcome in OUTCOMES else ""
        self.label.value = f"<b>{self.title}</b>: {html.escape(summary)}"
        svg = live_chart_svg(self.history, len(self.history)) if self.history else None
        update_display(self._bundle(summary, svg), raw=True, display_id=self.display_id)


def in_notebook() -> bool:
    """True inside a Jupyter kernel that can show widgets."""
    ipython_module: Any = sys.modules.get("IPython")
    if ipython_module is None:
        return False
    shell = ipython_module.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(enabled: bool, title: str) -> Progress:
    """Pick the widget in Jupyter, a text line elsewhere, or nothing."""
    if not enabled:
        return NullProgress()
    if in_notebook():
        try:
            return WidgetProgress(title)
        except ImportError:
            pass
    return TextProgress(title)
