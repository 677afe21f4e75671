"""Figures, bounds, warnings and tables of load results, from synthetic timings."""

from __future__ import annotations

import json
import random
import statistics

import pytest

from labkit.load import (
    LoadResult,
    Sweep,
    Timing,
    compare,
    latency_percentiles,
    littles_law_bound,
)


def timings(
    n: int,
    *,
    ms: float = 200.0,
    spread: float = 50.0,
    kind: str | None = None,
    seed: int = 1,
    start: float = 1000.0,
    every_s: float = 0.01,
) -> list[Timing]:
    rng = random.Random(seed)
    return [
        Timing(
            start + i * every_s,
            ms + rng.random() * spread,
            500 if kind else 200,
            kind,
            20,
            "/api/chat/",
        )
        for i in range(n)
    ]


def result(n: int = 500, **options) -> LoadResult:
    kind = options.pop("kind", None)
    ms = options.pop("ms", 200.0)
    shape = {k: options.pop(k) for k in ("spread", "every_s") if k in options}
    defaults = {"scenario": "chat", "users": 20, "duration_s": 5, "window": (1000.0, 1005.0)}
    records = timings(n, ms=ms, kind=kind, **shape)
    return LoadResult.from_timings(records, **{**defaults, **options})


def test_littles_law_bound_closed_loop() -> None:
    assert littles_law_bound(users=20, latency_s=0.2) == pytest.approx(100)
    assert littles_law_bound(users=50, latency_s=1.0, workers=4) == pytest.approx(4)
    assert littles_law_bound(users=2, latency_s=1.0, workers=4) == pytest.approx(2)
    # Think time: each user spends 1 s waiting and 1 s thinking per request.
    assert littles_law_bound(users=10, latency_s=1.0, wait_s=1.0) == pytest.approx(5)


def test_littles_law_bound_open_loop() -> None:
    assert littles_law_bound(arrival_rate=20, latency_s=0.2) == pytest.approx(20)
    assert littles_law_bound(arrival_rate=20, latency_s=0.2, workers=1) == pytest.approx(5)
    with pytest.raises(ValueError, match="latency_s"):
        littles_law_bound(users=1, latency_s=0)


def test_figures_come_from_the_timings() -> None:
    records = timings(400, kind=None) + timings(100, kind="timeout", seed=2, start=1002.0)
    r = LoadResult.from_timings(
        records, scenario="chat", users=20, duration_s=5, window=(1000.0, 1005.0), latency_s=0.2
    )
    values = [t.ms for t in records]
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    assert (r.p50_ms, r.p95_ms, r.p99_ms) == (cuts[49], cuts[94], cuts[98])
    assert r.mean_ms == pytest.approx(statistics.fmean(values))
    assert r.requests == 500 and r.errors == 100 and r.error_rate == pytest.approx(0.2)
    assert r.errors_by_kind == {"timeout": 100}
    last_reply = max(t.end for t in records)
    # successes only, from the first request sent to the last reply (timeouts included)
    assert r.rps == pytest.approx(400 / (last_reply - min(t.start for t in records)))
    assert r.bound_rps == pytest.approx(100) and r.efficiency == pytest.approx(r.rps / 100)
    assert r.warnings == []


def test_rps_does_not_count_requests_cut_off_at_the_stop() -> None:
    # 4 workers, 1 s per request: 3 rounds answered by 1003.0, then Locust stops at 1003.6
    # with a 4th round in flight. The server did 12 requests in 3 s: 4 rps, not 12 / 3.6.
    records = [
        Timing(start=1000.0 + round_, ms=1000.0, status=200, kind=None, bytes=10, name="chat")
        for round_ in range(3)
        for _ in range(4)
    ]
    r = LoadResult.from_timings(
        records, scenario="chat", users=4, duration_s=3, window=(1000.0, 1003.6), latency_s=1.0
    )
    assert r.rps == pytest.approx(4.0)
    assert r.window_s == pytest.approx(3.6)


def test_late_timeouts_end_the_span() -> None:
    # 8 answers early, then timeouts until the end: the rate is 8 over the whole span.
    ok = [Timing(1000.0 + i * 0.1, 1000.0, 200, None, 10, "chat") for i in range(8)]
    late = [Timing(1002.0 + i, 3000.0, 0, "timeout", 0, "chat") for i in range(8)]
    r = LoadResult.from_timings(ok + late, scenario="chat", users=50, duration_s=12)
    assert r.rps == pytest.approx(8 / (1012.0 - 1000.0))


def test_percentiles_of_tiny_samples() -> None:
    assert latency_percentiles([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None}
    assert latency_percentiles([7.0])["p99_ms"] == 7.0
    assert latency_percentiles([1.0, 3.0])["p50_ms"] == 2.0


def test_window_defaults_to_first_start_to_last_end() -> None:
    r = LoadResult.from_timings(
        timings(11, ms=1000, spread=0, every_s=0.1), scenario="x", users=1, duration_s=1
    )
    assert r.window_s == pytest.approx(2.0)
    assert r.rps == pytest.approx(5.5)


def test_warns_on_too_few_requests() -> None:
    r = result(3)
    assert r.requests == 3
    assert len(r.warnings) == 1 and "Only 3 requests" in r.warnings[0]
    assert "duration_s" in r.warnings[0]  # says what to do about it


def test_every_sizes_shortest_open_run_meets_the_request_threshold(monkeypatch) -> None:
    # The fewest requests a notebook's own run makes: 06's open loop under the sync ceiling
    # (threads / latency_s): 0.75 x it at quick size, 0.5 x it otherwise, for duration_s.
    from labkit.load.trust import MIN_REQUESTS
    from labkit.sizing import sizes

    for mode, share in (("quick", 0.75), ("default", 0.5), ("workshop", 0.5)):
        monkeypatch.setenv("LAB_SIZE", mode)
        size = sizes()
        rate = share * size.threads / size.latency_s
        n = int(rate * size.duration_s)
        assert n >= MIN_REQUESTS, (mode, n)
        r = result(n, every_s=1 / rate, mode="open", arrival_rate=rate, users=None)
        assert not any("Only" in w for w in r.warnings), (mode, r.warnings)


def test_a_run_of_errors_says_so_first_and_shows_no_efficiency() -> None:
    refused = [Timing(1000 + i * 0.01, 5.0, 403, "http_403", 20, "/api/chat/") for i in range(300)]
    r = LoadResult.from_timings(
        refused, scenario="chat", users=50, duration_s=5, window=(1000.0, 1005.0), latency_s=1.0
    )
    assert r.failed and r.error_rate == 1.0
    assert r.failure.startswith("This run failed: 300 of 300 requests (100%) were errors")
    assert "http_403 300" in r.failure and "is its exercise done?" in r.failure
    assert r.warnings == []  # the failure is the headline; nothing else is a result
    for page in (str(r), r._repr_markdown_(), r._repr_html_()):
        assert page.index("This run failed") < page.index("rps")
    row = str(r).splitlines()[-1].split()
    assert row[2] == "—"  # efficiency: no ratio from a run of errors
    assert "labkit-alert" in r._repr_html_()


def test_a_few_errors_do_not_make_a_failed_run() -> None:
    mixed = timings(90) + timings(10, kind="http_500", start=1001.0)
    r = LoadResult.from_timings(mixed, scenario="chat", users=20, duration_s=5)
    assert not r.failed and r.failure is None


def test_warns_when_the_generator_is_saturated() -> None:
    assert any("saturated" in w for w in result(generator_cpu=97.0).warnings)
    assert result(generator_cpu=40.0).warnings == []


def test_warns_when_rps_beats_the_bound() -> None:
    r = result(latency_s=1.0)  # 100 rps measured, bound 20
    assert any("don't describe this server" in w for w in r.warnings)


def test_open_loop_arrival_warnings() -> None:
    healthy = result(
        mode="open",
        users=None,
        arrival_rate=100,
        arrivals={"scheduled": 500, "sent": 500, "dropped": 0, "late": 0, "unfinished": 2},
    )
    assert healthy.warnings == []
    assert healthy.bound_rps == pytest.approx(100)
    behind = result(
        100,
        mode="open",
        users=None,
        arrival_rate=100,
        arrivals={
            "scheduled": 500,
            "sent": 300,
            "dropped": 200,
            "late": 30,
            "unfinished": 200,
            "max_in_flight": 200,
        },
    )
    text = "\n".join(behind.warnings)
    assert "200 of 500 arrivals were dropped" in text
    assert "30 of 300 arrivals left more than 100 ms late" in text
    assert "queue grew" in text


def test_a_short_open_run_that_keeps_up_is_not_called_a_growing_queue() -> None:
    # 100 arrivals/s at 200 ms each: ~20 in flight when a 5 s run stops is Little's law, not a
    # queue, though they pull rps under 0.9 x offered.
    keeping_up = result(
        420,
        every_s=4.8 / 420,
        mode="open",
        users=None,
        arrival_rate=100,
        arrivals={"scheduled": 500, "sent": 500, "dropped": 0, "late": 0, "unfinished": 20},
    )
    assert keeping_up.rps < 0.9 * 100
    assert not any("queue grew" in w for w in keeping_up.warnings)


def test_to_dict_is_json_and_speaks_the_vocabulary() -> None:
    data = json.loads(json.dumps(result(latency_s=0.2, workers=4, server="uvicorn").to_dict()))
    for key in (
        "rps",
        "p50_ms",
        "p95_ms",
        "p99_ms",
        "users",
        "latency_s",
        "workers",
        "errors",
        "error_rate",
        "bound_rps",
        "efficiency",
        "warnings",
        "mode",
        "duration_s",
    ):
        assert key in data
    assert "timings" not in data


def test_table_renders_with_the_bound_beside_rps() -> None:
    r = result(3, latency_s=0.2, workers=4, label="before")
    page = r._repr_html_()
    for needle in (
        "rps",
        "bound_rps",
        "p95_ms",
        "efficiency",
        "latency_s 0.20",
        "workers 4",
        "before",
        "Only 3 requests",
    ):
        assert needle in page
    assert page.index("rps") < page.index("bound_rps") < page.index("p95_ms")
    assert "| rps | bound_rps |" in r._repr_markdown_()
    assert "bound_rps" in str(r) and "warning: Only 3" in str(r)


def test_comparison_ratios_and_table() -> None:
    # Same span from the first request to the last answer (6 s), 5 times the answers.
    before = result(
        100, ms=1000.0, spread=0.0, every_s=0.05, label="sync", latency_s=1.0, workers=4
    )
    after = result(500, ms=1000.0, spread=0.0, every_s=0.01, label="async", latency_s=0.2)
    after.p95_ms = 250.0  # (a faster p95 for the table)
    c = compare(before, after)
    assert c.rps_ratio == pytest.approx(after.rps / before.rps) == pytest.approx(5, rel=0.01)
    assert c.p95_ratio == pytest.approx(before.p95_ms / after.p95_ms)
    assert c.p95_ratio > 3
    assert c.error_rate_change == 0
    page = c._repr_html_()
    ratio = f"×{c.rps_ratio:.2f}"
    for needle in ("p95 latency", "throughput (rps)", "error rate", "sync", "async", ratio):
        assert needle in page
    assert json.dumps(c.to_dict())


def test_comparison_of_error_rates() -> None:
    c = compare(result(100, kind="http_500"), result(100))
    assert c.error_rate_change == pytest.approx(-1.0)
    assert c.rps_ratio is None  # nothing succeeded before: no ratio to speak of
    assert "-100.0 pts" in str(c)


def test_a_comparison_with_a_failed_run_shows_no_ratio() -> None:
    # Unsolved 02: the sync starter is slow; the "after" view answers every request 403 at once.
    before = result(100, ms=5000.0, label="sync starter", latency_s=1.0, workers=4)
    after = result(900, ms=20.0, kind="http_403", label="async view", latency_s=1.0)
    c = compare(before, after)
    assert c.p95_ratio is None and c.rps_ratio is None
    assert c.failure.startswith("No comparison: async view (after): This run failed")
    text = str(c)
    assert text.startswith("FAILED: No comparison")
    assert "÷" not in text and "×" not in text
    html = c._repr_html_()
    assert html.index("No comparison") < html.index("p95 latency")
    assert c.to_dict()["failure"] == c.failure
    fig = c.plot()
    assert fig._suptitle.get_text().startswith("No comparison")


def test_a_sweep_names_its_failed_points() -> None:
    runs = [result(100, users=1, latency_s=0.2), result(100, users=2, kind="timeout")]
    s = Sweep("users", runs)
    assert str(s).startswith("FAILED: users=2: This run failed")


def test_sweep_table() -> None:
    runs = [result(100 * n, users=n, latency_s=0.2) for n in (1, 2, 4)]
    s = Sweep("users", runs)
    assert s.values == [1, 2, 4]
    assert "bound_rps" in s._repr_html_()
    assert len(s._repr_markdown_().splitlines()) >= 5
    assert json.dumps(s.to_dict())
