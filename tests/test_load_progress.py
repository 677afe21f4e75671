"""Live progress: a text line on a console, nothing when disabled."""

from __future__ import annotations

import io

from labkit.load.progress import (
    LiveStats,
    NullProgress,
    Snapshot,
    TextProgress,
    in_notebook,
    make_progress,
)
from labkit.load.results import Timing


def test_live_stats_cover_the_last_seconds() -> None:
    live = LiveStats()
    old = [Timing(100.0 + i * 0.01, 900.0, 200, None, 1, "/") for i in range(50)]
    new = [Timing(110.0 + i * 0.01, 100.0, 200, None, 1, "/") for i in range(30)]
    new.append(Timing(110.5, 50.0, 500, "http_500", 1, "/"))
    live.add(old + new)
    snap = live.snapshot(now=111.0, elapsed_s=11.0, total_s=20.0)
    assert (snap.requests, snap.errors) == (81, 1)
    assert snap.rps == 30 / 3.0  # successes in the last 3 s; the old ones have aged out
    assert snap.p95_ms == 100.0


def test_text_progress_rewrites_one_line() -> None:
    stream = io.StringIO()
    progress = TextProgress("chat · 20 users", stream)
    progress.update(Snapshot(5.0, 10.0, 100, 0, 20.0, 210.0))
    progress.update(Snapshot(10.0, 10.0, 200, 2, 20.0, 230.0))
    progress.close("done: 200 requests")
    out = stream.getvalue()
    assert out.count("\r") == 3 and out.endswith("\n") and out.count("\n") == 1
    assert "[############------------]" in out and "20.0 rps" in out and "p95_ms 210" in out
    assert "errors 2" in out and "done: 200 requests" in out


def test_outside_a_kernel_progress_is_text_or_nothing() -> None:
    assert not in_notebook()
    assert isinstance(make_progress(True, "x"), TextProgress)
    quiet = make_progress(False, "x")
    assert isinstance(quiet, NullProgress)
    quiet.update(Snapshot(1, 2, 0, 0, 0.0, None))
    quiet.close("done")


def test_bar_colours_follow_meaning() -> None:
    from labkit.load import LoadResult
    from labkit.load.progress import outcome

    def run(n: int, errors: int = 0) -> LoadResult:
        ok = [Timing(1000 + i * 0.01, 100.0, 200, None, 1, "/") for i in range(n)]
        bad = [Timing(1001 + i * 0.01, 5.0, 500, "http_500", 1, "/") for i in range(errors)]
        return LoadResult.from_timings(ok + bad, scenario="chat", users=10, duration_s=5)

    assert outcome(run(200)) == "success"
    few = run(5)
    assert few.warnings and few.errors == 0
    assert outcome(few) == "warning"  # amber, never red, for a run without errors
    assert outcome(run(200, errors=1)) == "danger"
    assert outcome(run(0, errors=50)) == "danger"


def test_live_chart_draws_the_run_so_far() -> None:
    from labkit.load.chart import live_chart_svg

    history = [
        Snapshot(1.0, 10.0, 10, 0, 9.5, 300.0, 210.0, 4),
        Snapshot(2.0, 10.0, 30, 0, 19.0, 320.0, 220.0, 8),
        Snapshot(3.0, 10.0, 55, 2, 24.0, 400.0, 230.0, 9),
    ]
    svg = live_chart_svg(history, 3)
    assert svg.startswith("<svg") and "data-updates='3'" in svg
    assert svg.count("<polyline") == 2  # rps and p95
    assert "rps 24.0 · p50_ms 230 · p95_ms 400 · errors 2 · in flight 9" in svg
    assert "#c62828" in svg  # errors turn the headline red
    assert "<polyline" not in live_chart_svg([], 0)


def test_in_flight_is_what_the_generators_last_reported() -> None:
    live = LiveStats()
    assert live.snapshot(now=1.0, elapsed_s=1.0, total_s=5.0).in_flight is None
    live.in_flight([
        {"e": "flight", "t": 1.0, "p": 11, "n": 20},
        {"e": "flight", "t": 1.0, "p": 12, "n": 7},
        {"e": "start", "t": 0.5},
        {"e": "flight", "t": 1.25, "p": 11, "n": 18},
    ])  # fmt: skip
    snap = live.snapshot(now=1.5, elapsed_s=1.5, total_s=5.0)
    assert snap.in_flight == 25  # 18 + 7: each process's latest count
    assert "in flight 25" in snap.line()
