"""The lab's instruments, imported by notebooks from this one place.

    from labkit import boot, count_queries, serve_asgi, run_load
    lab = boot()

Names load on first use (PEP 562), so `import labkit` stays light and Django is configured
only when `boot()` runs.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module that defines it; tests/test_exported_members.py pins this surface.
_EXPORTS: dict[str, str] = {
    "ASGIServer": "labkit.servers",
    "Lab": "labkit.boot",
    "LoadResult": "labkit.load",
    "Measurement": "labkit.meters",
    "MockLLM": "labkit.mock_llm",
    "QueryLog": "labkit.queries",
    "SingleFlight": "labkit.singleflight",
    "Sizes": "labkit.sizing",
    "WSGIServer": "labkit.servers",
    "add_database": "labkit.databases",
    "allow_asyncio_run": "labkit.nesting",
    "arun_load": "labkit.load",
    "backend_peak": "labkit.databases",
    "boot": "labkit.boot",
    "close_pools": "labkit.databases",
    "compare": "labkit.load",
    "compare_timelines": "labkit.timeline",
    "connection_peak": "labkit.databases",
    "count_hops": "labkit.hops",
    "count_queries": "labkit.queries",
    "endpoint": "labkit.boot",
    "ensure_service": "labkit.services",
    "in_worker_thread": "labkit.boot",
    "littles_law_bound": "labkit.load",
    "littles_law_explorer": "labkit.load",
    "measure": "labkit.meters",
    "measure_queueing": "labkit.queueing",
    "mock_llm": "labkit.boot",
    "on_endpoint": "labkit.boot",
    "on_mock": "labkit.boot",
    "overlap": "labkit.timeline",
    "plot_queueing": "labkit.queueing",
    "plot_timeline": "labkit.timeline",
    "rate_sweep": "labkit.load",
    "real_server": "labkit.queueing",
    "release_services": "labkit.services",
    "routed_to": "labkit.databases",
    "run_load": "labkit.load",
    "serve_asgi": "labkit.servers",
    "serve_granian": "labkit.servers",
    "serve_gunicorn": "labkit.servers",
    "serve_task_worker": "labkit.servers",
    "serve_uvicorn": "labkit.servers",
    "serve_wsgi": "labkit.servers",
    "sizes": "labkit.sizing",
    "stop_all": "labkit.servers",
    "sweep": "labkit.load",
    "track_requests": "labkit.queries",
    "try_endpoint": "labkit.endpoint_sample",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'labkit' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
