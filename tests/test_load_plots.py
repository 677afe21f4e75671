"""Plots build and render without warnings, from synthetic results."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from labkit.load import LoadResult, Sweep, Timing, compare


def result(n: int, ms: float, users: int = 10, errors: int = 0) -> LoadResult:
    records = [
        Timing(1000 + i * 0.01, ms + (i % 17) * 3, 200, None, 10, "/api/chat/") for i in range(n)
    ] + [Timing(1000.5 + i * 0.1, 5.0, 500, "http_500", 10, "/api/chat/") for i in range(errors)]
    return LoadResult.from_timings(
        records, scenario="chat", users=users, duration_s=5, window=(1000, 1005), latency_s=0.2
    )


def rendered(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_result_plot_has_time_and_distribution() -> None:
    fig = result(300, 200.0, errors=5).plot()
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3  # over time, histogram and its ECDF twin
    assert fig.axes[0].get_xlabel().startswith("request start")
    assert rendered(fig).startswith(b"\x89PNG")


def test_empty_result_still_plots() -> None:
    assert rendered(result(0, 200.0).plot())


def test_comparison_and_sweep_plots() -> None:
    fig = compare(result(100, 900.0), result(400, 210.0)).plot()
    assert len(fig.axes) == 2 and rendered(fig)
    sweep = Sweep("users", [result(50 * n, 200.0, users=n) for n in (1, 2, 4)])
    fig = sweep.plot()
    rate = fig.axes[0]
    assert rate.get_xlabel() == "users"
    assert any("bound_rps" in line.get_label() for line in rate.get_lines())
    assert rendered(fig)


def test_figures_render_as_png_without_pyplot() -> None:
    # IPython's own PNG formatter, as a fresh kernel uses it before any backend is active:
    # a bare Figure gives nothing (it would show as "<Figure size ...>"), ours a PNG.
    from IPython.core.formatters import PNGFormatter

    from labkit.timeline import plot_timeline

    png = PNGFormatter()
    assert png(Figure()) is None
    timeline = plot_timeline([{"accepted_at": 0.0, "started_at": 0.0, "finished_at": 1.0}])
    for fig in (result(50, 200.0).plot(), timeline):
        assert png(fig).startswith(b"\x89PNG")
