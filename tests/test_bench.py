"""`labkit bench` writes figures with their scenario as JSON and tables (reported, not judged).

The slow tests run the real command, shrunk by its flags; they check the report's shape, that
each figure is a number beside the scenario it was measured in, and counts that do not depend
on timing (queries, upstream calls) — never how fast anything was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from numbers import Real

import pytest

from labkit.bench import SECTIONS
from labkit.bench.report import SCENARIO_KEYS, grid, render, row, section

KEYS = {"name", "server", "workers", "users", "latency_s", "rps", "bound_rps", "efficiency",
        "p50_ms", "p95_ms", "errors"}  # fmt: skip
SECTION_KEYS = {"title", "about", "columns", "rows", "notes", "skipped"}


def _bench(tmp_path, *flags: str, timeout: float) -> tuple[dict, str]:
    out = tmp_path / "bench.json"
    env = {**os.environ, "LAB_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "bench", "--json", str(out), *flags],
        capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(out.read_text()), result.stdout


def _number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


@pytest.mark.slow
def test_quick_bench_json_shape_and_sync_async_ratio(tmp_path):
    report, stdout = _bench(
        tmp_path, "--quick", "--users", "20", "--latency", "0.3", "--duration", "4", timeout=180
    )
    assert report["mode"] == "quick"
    assert report["machine"]["cpus"] >= 1 and report["date"]
    by_name = {s["name"]: s for s in report["scenarios"]}
    assert set(by_name) == {"sync-wsgi", "async-uvicorn"}
    for scenario in by_name.values():
        assert KEYS <= set(scenario), KEYS - set(scenario)
        assert scenario["errors"] == 0
        assert scenario["efficiency"] == pytest.approx(scenario["rps"] / scenario["bound_rps"])
    sync, async_ = by_name["sync-wsgi"], by_name["async-uvicorn"]
    assert sync["bound_rps"] == pytest.approx(4 / 0.3)
    assert async_["bound_rps"] == pytest.approx(20 / 0.3)
    # 4 threads cap the sync server; async serves all 20 users: a wide-margin ratio only.
    assert async_["rps"] > 2.5 * sync["rps"]
    assert "sync-wsgi" in stdout and "bound_rps" in stdout


@pytest.mark.slow
def test_tiny_full_bench_reports_every_section_with_its_scenario(tmp_path):
    report, stdout = _bench(
        tmp_path, "--duration", "2", "--users", "8", "--latency", "0.2", "--sweep-users", "4",
        "--sweep-latencies", "0.2", "--calls", "120", "--rounds", "1", timeout=240,
    )  # fmt: skip
    assert report["mode"] == "full" and report["plan"]["calls"] == 120
    assert report["sections"] == list(SECTIONS)
    assert {s["name"] for s in report["scenarios"]} == {"sync-wsgi", "async-uvicorn"}
    for key in SECTIONS:
        data = report[key]
        assert SECTION_KEYS <= set(data) and "error" not in data, (key, data.get("error"))
        assert data["rows"], key
        assert f"== {data['title']} ==" in stdout
        for line in data["rows"]:
            assert set(SCENARIO_KEYS) <= set(line), (key, line)
            assert line["cpus"] >= 1
            for column in data["columns"][1:]:
                # Every figure shown is a number; a scenario key that does not apply is None.
                assert _number(line[column]) or (column in SCENARIO_KEYS and line[column] is None)
            if "rps" in line:  # throughput comes with its Little's-law bound
                assert _number(line["bound_rps"]) and line["bound_rps"] > 0

    sweep = report["users_sweep"]["rows"]
    assert {(r["name"], r["users"], r["latency_s"]) for r in sweep} == {
        ("sync-wsgi", 4, 0.2), ("async-uvicorn", 4, 0.2)
    }  # fmt: skip
    assert [(r["name"], r["workers"]) for r in report["uvicorn_workers"]["rows"]] == [
        ("uvicorn-1w", 1), ("granian-1w", 1), ("uvicorn-2w", 2), ("granian-2w", 2)
    ]  # fmt: skip

    connections = {r["name"]: r for r in report["llm_connections"]["rows"]}
    assert connections["client-per-request"]["connections"] == 120  # one per call
    # 50 calls in flight at a time: the pool opens about that many and reuses them.
    assert connections["pooled-client"]["connections"] < 60

    flights = {r["name"]: r for r in report["single_flight"]["rows"]}
    assert flights["without single-flight"]["upstream_calls"] == 100
    assert flights["with single-flight"]["upstream_calls"] == 1

    queries = {r["name"].split()[0]: r for r in report["document_queries"]["rows"]}
    assert queries["n+1"]["n_queries"] == queries["n+1"]["chunks"] + 2
    assert queries["prefetch_related().aget()"]["n_queries"] == 2
    assert queries["values_list()"]["n_queries"] == 1

    cache = report["cache_hits"]
    names = {r["name"] for r in cache["rows"]}
    assert {"locmem get", "locmem aget"} <= names
    if os.environ.get("LAB_REQUIRE_SERVICES") == "1" or not cache["skipped"]:
        assert {"redis get", "redis aget"} <= names
    else:
        assert cache["skipped"].startswith("redis: ")
    assert all(r["misses"] == 0 for r in cache["rows"])
    assert ":***@" in json.dumps(cache) or "@" not in json.dumps(cache)  # no password shown

    assert [r["name"] for r in report["framework_cpu"]["rows"]] == [
        "django-reference", "django-no-log-row", "starlette"
    ]  # fmt: skip


@pytest.mark.slow
def test_granian_is_a_peer_row_of_the_workers_section(tmp_path):
    report, stdout = _bench(
        tmp_path, "--only", "uvicorn_workers", "--duration", "2", "--users", "8",
        "--latency", "0.2", "--sweep-users", "6", timeout=180,
    )  # fmt: skip
    assert report["sections"] == ["uvicorn_workers"] and report["scenarios"] == []
    rows = {r["name"]: r for r in report["uvicorn_workers"]["rows"]}
    assert set(rows) == {"uvicorn-1w", "granian-1w", "uvicorn-2w", "granian-2w"}
    for name, line in rows.items():
        server, workers = name.split("-")
        # Same scenario on both servers: users, latency, duration and the bound they imply.
        assert line["server"] == f"{server}-process" and line["workers"] == int(workers[0])
        assert (line["users"], line["latency_s"], line["duration_s"]) == (6, 0.2, 2)
        assert line["bound_rps"] == pytest.approx(6 / 0.2)
        assert line["errors"] == 0 and line["requests"] > 0
        assert _number(line["cpu_ms_per_request"]) and line["cpu_ms_per_request"] > 0
    assert "granian-2w" in stdout and "== uvicorn and Granian workers ==" in stdout


def test_section_table_shows_columns_numbers_and_what_was_skipped():
    rows = [
        row("locmem get", users=1, latency_s=None, workers=None, duration_s=0.0123,
            p50_ms=0.0042, p99_ms=0.25),
        row("redis get", users=1, latency_s=None, workers=None, duration_s=1.5,
            p50_ms=0.12, p99_ms=123.4),
    ]  # fmt: skip
    data = section("cache hits", "Latency of a hit.", ["name", "users", "latency_s", "p50_ms",
                   "p99_ms"], rows, notes=["one key"], skipped="redis: not installed")  # fmt: skip
    text = render(data)
    lines = text.splitlines()
    assert lines[0] == "== cache hits ==" and lines[1] == "Latency of a hit."
    assert lines[2].split() == ["name", "users", "latency_s", "p50_ms", "p99_ms"]
    assert lines[3].split() == ["locmem", "get", "1", "-", "0.004", "0.25"]
    assert lines[4].split() == ["redis", "get", "1", "-", "0.12", "123"]
    assert len({len(line) for line in lines[2:5]}) == 1  # columns line up
    assert lines[-2:] == ["note: one key", "skipped: redis: not installed"]
    assert rows[0]["duration_s"] == 0.01 and rows[0]["cpus"] >= 1


def test_failed_section_is_rendered_with_its_error():
    from labkit.bench.report import failed

    text = render(failed("uvicorn workers", RuntimeError("port in use")))
    assert text.splitlines() == ["== uvicorn workers ==", "failed: RuntimeError: port in use"]
    assert grid([{"name": "a", "rps": None}], ["name", "rps"]).splitlines()[1].split() == [
        "a", "-"
    ]  # fmt: skip
