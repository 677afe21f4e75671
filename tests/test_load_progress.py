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
