"""Live progress of a load run: a widget in Jupyter, one rewritten line on a console."""

from __future__ import annotations

import html
import sys
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from labkit.load.results import Timing, latency_percentiles

# Live figures cover the last few seconds, so they show where the run is now,
# not an average that hides a queue building up.
WINDOW_S = 3.0


@dataclass
class Snapshot:
    """What the run looks like so far."""

    elapsed_s: float
    total_s: float
    requests: int
    errors: int
    rps: float
    p95_ms: float | None

    def line(self) -> str:
        p95 = "—" if self.p95_ms is None else f"{self.p95_ms:.0f}"
        return (
            f"{self.elapsed_s:4.0f}/{self.total_s:.0f} s  {self.requests} requests  "
            f"{self.rps:.1f} rps  p95_ms {p95}  errors {self.errors}"
        )


class LiveStats:
    """Fold records in as they arrive; report rps and p95 over the last WINDOW_S seconds."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.recent: deque[Timing] = deque()

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
        p95 = latency_percentiles([r.ms for r in self.recent])["p95_ms"]
        return Snapshot(elapsed_s, total_s, self.requests, self.errors, ok / window, p95)


class Progress(Protocol):
    def update(self, snapshot: Snapshot) -> None: ...

    def close(self, summary: str, ok: bool = True) -> None: ...


class NullProgress:
    """Show nothing (progress=False)."""

    def update(self, snapshot: Snapshot) -> None:
        pass

    def close(self, summary: str, ok: bool = True) -> None:
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

    def close(self, summary: str, ok: bool = True) -> None:
        self._write(f"{self.title}: {summary}")
        self.stream.write("\n")
        self.stream.flush()


class WidgetProgress:
    """An IntProgress bar and a label, displayed in the cell's output."""

    steps = 200

    def __init__(self, title: str) -> None:
        import ipywidgets
        from IPython.display import display

        self.bar = ipywidgets.IntProgress(value=0, min=0, max=self.steps, description="load")
        self.title = html.escape(title)
        self.label = ipywidgets.HTML(value=f"{self.title}: starting Locust…")
        display(ipywidgets.HBox([self.bar, self.label]))

    def update(self, snapshot: Snapshot) -> None:
        done = min(1.0, snapshot.elapsed_s / snapshot.total_s) if snapshot.total_s else 1.0
        self.bar.value = int(done * self.steps)
        self.label.value = f"{self.title}: {html.escape(snapshot.line())}"

    def close(self, summary: str, ok: bool = True) -> None:
        self.bar.value = self.steps
        self.bar.bar_style = "success" if ok else "danger"
        self.label.value = f"{self.title}: {html.escape(summary)}"


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
