"""The concurrency timeline: bars per request, peak overlap, and the one-line summary."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from labkit.servers import RequestTiming
from labkit.timeline import compare_timelines, overlap, plot_timeline, summary


def staircase(n: int = 12, threads: int = 4, served_s: float = 0.5) -> list[RequestTiming]:
    """What a `threads`-thread sync server records for `n` requests arriving at once."""
    return [
        RequestTiming(
            path=f"/r{i}",
            method="GET",
            status=200,
            accepted_at=100.0,
            started_at=100.0 + served_s * (i // threads),
            finished_at=100.0 + served_s * (i // threads + 1),
            thread=f"worker-{i % threads}",
        )
        for i in range(n)
    ]


def overlapping(n: int = 20) -> list[dict[str, float]]:
    """What an async server records: every request served as soon as it arrives."""
    return [
        {"accepted_at": 5.0 + 0.01 * i, "started_at": 5.0 + 0.01 * i, "finished_at": 5.5 + 0.01 * i}
        for i in range(n)
    ]


def test_overlap_counts_the_most_requests_served_at_once() -> None:
    assert overlap(staircase(12, threads=4)) == 4
    assert overlap(staircase(7, threads=1)) == 1
    assert overlap(overlapping(20)) == 20
    assert overlap([]) == 0
    # One request starting the instant another finishes is not overlapping it.
    back_to_back = [
        {"accepted_at": 0.0, "started_at": 0.0, "finished_at": 1.0},
        {"accepted_at": 0.0, "started_at": 1.0, "finished_at": 2.0},
    ]
    assert overlap(back_to_back) == 1


def test_summary_says_how_many_overlapped_and_waited() -> None:
    assert summary(staircase(12, threads=4)) == (
        "12 requests over 1.50 s; at most 4 served at once; 8 waited (longest 1.00 s)."
    )
    assert summary(overlapping(20)) == (
        "20 requests over 0.69 s; at most 20 served at once; none waited."
    )
    assert summary([]).startswith("No requests recorded")


def test_plot_timeline_draws_a_waiting_and_a_served_bar_per_request() -> None:
    figure = plot_timeline(staircase(12), title="sync, 4 threads")

    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    waiting, served = ax.containers
    assert (len(waiting), len(served)) == (12, 12)
    # Sorted by acceptance, in seconds from the first: the last request waited 1 s, served 0.5.
    assert waiting[-1].get_x() == 0 and waiting[-1].get_width() == pytest.approx(1.0)
    assert served[-1].get_x() == pytest.approx(1.0)
    assert served[-1].get_width() == pytest.approx(0.5)
    assert ax.get_title(loc="left").startswith("sync, 4 threads: 12 requests")
    figure.canvas.draw()  # renders headless


def test_plot_timeline_draws_into_a_given_axes() -> None:
    host = Figure()
    ax = host.subplots()
    assert plot_timeline(overlapping(5), ax=ax) is host
    assert len(ax.containers[1]) == 5


def test_compare_timelines_shares_the_time_scale() -> None:
    figure = compare_timelines(staircase(12), overlapping(20), titles=("sync", "async"))

    top, bottom = figure.axes
    assert (len(top.containers[1]), len(bottom.containers[1])) == (12, 20)
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_xlim() == bottom.get_xlim()
    figure.canvas.draw()


def test_a_record_without_times_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="needs accepted_at, started_at and finished_at"):
        overlap([{"path": "/"}])


def test_a_timeline_of_failed_requests_says_so_first() -> None:
    refused = [
        {"accepted_at": 0.01 * i, "started_at": 0.01 * i, "finished_at": 0.01 * i + 0.005,
         "status": 403}
        for i in range(50)
    ]  # fmt: skip
    text = summary(refused)
    assert text.startswith("50 of 50 requests failed (403 ×50): these bars show failures")
    figure = plot_timeline(refused, title="async view")
    assert "failed" in figure.axes[0].get_title(loc="left")
    assert not summary(staircase(12)).startswith("12 of")  # 200s: no such sentence
