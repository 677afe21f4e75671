"""Little's law to play with: sliders for users, LLM latency and workers, the bound at once.

A measuring function turns a chosen point into a short real load run; its rps joins the
chart beside the bound, so the law and the machine can be compared point by point.

    def measure(users, latency_s, workers):
        ...  # serve `workers` threads, set the mock's latency, run_load(...) for a few seconds
    littles_law_explorer(measure, users=50, latency_s=1.0, workers=4)

In JupyterLab the explorer is live widgets; where no widget can be drawn (nbconvert, the
grader) the same display shows the bound as text and the chart as a PNG.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from labkit.load.results import littles_law_bound

if TYPE_CHECKING:
    from labkit.load.plots import LabFigure
    from labkit.load.results import LoadResult

Measure = Callable[[int, float, int], "LoadResult"]
MAX_USERS = 400


@dataclass
class Point:
    """One measured run of the explorer."""

    users: int
    latency_s: float
    workers: int
    rps: float
    bound_rps: float
    failed: bool


@dataclass
class Explorer:
    """The explorer's state: the chosen scenario and the points measured so far."""

    users: int
    latency_s: float
    workers: int
    points: list[Point] = field(default_factory=list)

    @property
    def bound_rps(self) -> float:
        return littles_law_bound(users=self.users, latency_s=self.latency_s, workers=self.workers)

    def explain(self) -> str:
        """The bound and which side of it binds, in one sentence."""
        by_users = self.users / self.latency_s
        by_workers = self.workers / self.latency_s
        limit = "the workers" if by_workers < by_users else "the users"
        return (
            f"bound_rps {self.bound_rps:.1f}: {self.users} users ÷ {self.latency_s:g} s = "
            f"{by_users:.1f}, {self.workers} workers ÷ {self.latency_s:g} s = {by_workers:.1f}; "
            f"{limit} set the limit."
        )

    def add(self, result: LoadResult) -> Point:
        point = Point(
            self.users,
            self.latency_s,
            self.workers,
            result.rps,
            result.bound_rps or self.bound_rps,
            result.failed,
        )
        self.points.append(point)
        return point

    def figure(self) -> LabFigure:
        """The bound against users at this latency and these workers, measured points on it."""
        from labkit.load.plots import BOUND_COLOR, ERROR_COLOR, OK_COLOR, new_figure

        fig = new_figure(figsize=(7, 3.2))
        ax = fig.subplots()
        top = max(MAX_USERS // 4, self.users * 2, *(p.users for p in self.points))
        xs = list(range(1, top + 1))
        ax.plot(
            xs,
            [
                littles_law_bound(users=u, latency_s=self.latency_s, workers=self.workers)
                for u in xs
            ],
            color=BOUND_COLOR,
            linestyle="--",
            label=f"bound_rps (latency_s {self.latency_s:g}, workers {self.workers})",
        )
        ax.plot([self.users], [self.bound_rps], "o", color=BOUND_COLOR, fillstyle="none")
        for point in self.points:
            same = point.latency_s == self.latency_s and point.workers == self.workers
            ax.plot(
                [point.users],
                [point.rps],
                "x" if point.failed else "o",
                color=ERROR_COLOR if point.failed else OK_COLOR,
                alpha=1.0 if same else 0.35,
            )
        if self.points:
            ax.plot([], [], "o", color=OK_COLOR, label="rps measured")
        ax.set_xlabel("users")
        ax.set_ylabel("requests per second")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="lower right")
        ax.set_title(self.explain(), fontsize=8, loc="left")
        return fig

    def text(self) -> str:
        lines = [self.explain()]
        lines += [
            f"measured: {p.users} users, latency_s {p.latency_s:g}, workers {p.workers}: "
            + ("failed" if p.failed else f"{p.rps:.1f} of {p.bound_rps:.1f} rps")
            for p in self.points
        ]
        return "\n".join(lines)


def littles_law_explorer(
    measure: Measure | None = None,
    *,
    users: int = 50,
    latency_s: float = 1.0,
    workers: int = 4,
) -> Explorer:
    """Show sliders for users, latency_s and workers with the bound, and a button to measure.

    `measure(users, latency_s, workers)` runs a short load and returns its LoadResult; without
    it the explorer only computes. Returns the Explorer (its `points` fill as you measure).
    """
    from labkit.load.progress import in_notebook

    explorer = Explorer(users, latency_s, workers)
    if not in_notebook():  # a console: the bound as text, nothing to click
        print(explorer.text())
        return explorer
    import ipywidgets
    from IPython.display import display

    sliders = {
        "users": ipywidgets.IntSlider(value=users, min=1, max=MAX_USERS, description="users"),
        "latency_s": ipywidgets.FloatSlider(
            value=latency_s, min=0.1, max=3.0, step=0.1, description="latency_s"
        ),
        "workers": ipywidgets.IntSlider(value=workers, min=1, max=64, description="workers"),
    }
    bound = ipywidgets.HTML()
    chart = ipywidgets.Image(format="png")
    status = ipywidgets.HTML()
    button = ipywidgets.Button(
        description="measure this point", icon="play", disabled=measure is None
    )

    def redraw(*_: Any) -> None:
        explorer.users = sliders["users"].value
        explorer.latency_s = round(sliders["latency_s"].value, 3)
        explorer.workers = sliders["workers"].value
        bound.value = f"<b>{html.escape(explorer.explain())}</b>"
        chart.value = explorer.figure()._repr_png_()

    def run(_: Any) -> None:
        if measure is None:
            return
        button.disabled = True
        status.value = (
            f"measuring {explorer.users} users, latency_s {explorer.latency_s:g}, "
            f"workers {explorer.workers}…"
        )
        try:
            point = explorer.add(measure(explorer.users, explorer.latency_s, explorer.workers))
            status.value = html.escape(
                "failed: see the run's errors"
                if point.failed
                else f"measured {point.rps:.1f} rps of a bound of {point.bound_rps:.1f}"
            )
        except Exception as exc:  # noqa: BLE001 - shown to the learner, the explorer lives on
            status.value = f"<span style='color:#c62828'>{html.escape(str(exc))}</span>"
        finally:
            button.disabled = False
            redraw()

    for slider in sliders.values():
        slider.observe(redraw, names="value")
    button.on_click(run)
    redraw()
    box = ipywidgets.VBox(
        [ipywidgets.HBox(list(sliders.values())), bound, ipywidgets.HBox([button, status]), chart]
    )
    display(
        {
            "application/vnd.jupyter.widget-view+json": {
                "version_major": 2,
                "version_minor": 0,
                "model_id": box.model_id,
            },
            "text/plain": explorer.text(),
            "image/png": base64.b64encode(explorer.figure()._repr_png_()).decode("ascii"),
        },
        raw=True,
    )
    return explorer
