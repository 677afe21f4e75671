"""The public surface notebooks import from is pinned: changing it is a deliberate act."""

from __future__ import annotations

import labkit

EXPECTED = [
    "ASGIServer", "Lab", "LoadResult", "Measurement", "MockLLM", "QueryLog", "SingleFlight",
    "Sizes", "WSGIServer", "add_database", "allow_asyncio_run", "arun_load", "backend_peak",
    "boot", "close_pools", "compare", "compare_timelines", "connection_peak", "count_hops",
    "count_queries", "endpoint", "ensure_service", "in_worker_thread", "littles_law_bound",
    "littles_law_explorer", "measure", "measure_queueing", "mock_llm", "on_endpoint", "on_mock",
    "overlap", "plot_queueing", "plot_timeline", "rate_sweep", "real_server",
    "release_services", "routed_to", "run_load", "serve_asgi", "serve_granian",
    "serve_gunicorn", "serve_task_worker", "serve_uvicorn", "serve_wsgi", "sizes", "stop_all",
    "sweep", "track_requests", "try_endpoint",
]  # fmt: skip


def test_all_is_sorted_and_pinned():
    assert labkit.__all__ == sorted(labkit.__all__)
    assert labkit.__all__ == EXPECTED


def test_every_export_resolves():
    for name in labkit.__all__:
        assert getattr(labkit, name) is not None, name


def test_unknown_name_is_a_clear_attribute_error():
    try:
        labkit.boott  # noqa: B018
    except AttributeError as exc:
        assert "no attribute 'boott'" in str(exc)
    else:
        raise AssertionError("labkit.boott resolved")
