"""`labkit bench --quick` writes the scenario table as JSON (figures reported, not judged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

KEYS = {"name", "server", "workers", "users", "latency_s", "rps", "bound_rps", "efficiency",
        "p50_ms", "p95_ms", "errors"}  # fmt: skip


def test_quick_bench_json_shape_and_sync_async_ratio(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "LAB_STATE_DIR": str(tmp_path / "state")}
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "bench", "--quick", "--json", str(out),
         "--users", "20", "--latency", "0.3", "--duration", "4"],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
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
    assert "sync-wsgi" in result.stdout and "bound_rps" in result.stdout
