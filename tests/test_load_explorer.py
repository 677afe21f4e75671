"""The Little's-law explorer: the bound for any point at once, measured points on its chart."""

from __future__ import annotations

from labkit.load import LoadResult, Timing, littles_law_explorer
from labkit.load.explorer import Explorer


def measured(users: int, latency_s: float, workers: int, kind: str | None = None) -> LoadResult:
    records = [
        Timing(1000 + i * 0.25, latency_s * 1000, 200 if kind is None else 403, kind, 9, "/")
        for i in range(40)
    ]
    return LoadResult.from_timings(
        records, scenario="chat", users=users, duration_s=10, latency_s=latency_s, workers=workers
    )


def test_the_bound_and_which_side_sets_it() -> None:
    explorer = Explorer(users=50, latency_s=0.5, workers=4)
    assert explorer.bound_rps == 8.0
    assert explorer.explain() == (
        "bound_rps 8.0: 50 users ÷ 0.5 s = 100.0, 4 workers ÷ 0.5 s = 8.0; "
        "the workers set the limit."
    )
    explorer.workers = 200
    assert explorer.bound_rps == 100.0 and explorer.explain().endswith("the users set the limit.")


def test_measured_points_join_the_chart_and_the_text() -> None:
    explorer = Explorer(users=20, latency_s=0.5, workers=4)
    explorer.add(measured(20, 0.5, 4))
    explorer.add(measured(20, 0.5, 4, kind="http_403"))
    text = explorer.text().splitlines()
    assert text[1].startswith("measured: 20 users, latency_s 0.5, workers 4: ")
    assert text[1].endswith("of 8.0 rps") and text[2].endswith("failed")
    fig = explorer.figure()
    (ax,) = fig.axes
    assert ax.get_xlabel() == "users" and "bound_rps" in ax.get_legend_handles_labels()[1][0]
    assert fig._repr_png_().startswith(b"\x89PNG")


def test_outside_a_kernel_it_still_answers() -> None:
    explorer = littles_law_explorer(users=10, latency_s=1.0, workers=2)
    assert explorer.bound_rps == 2.0 and explorer.points == []
