"""Servers the lab runs: in-kernel WSGI/ASGI for cell-defined views, subprocesses for modules.

In a notebook cell (re-running it replaces the servers instead of adding more):

    before = serve_wsgi(sync_app, name="before", threads=4)
    after = serve_asgi(async_app, name="after")
    worker = serve_task_worker()   # a Django Tasks worker process (db_worker)
"""

from __future__ import annotations

from labkit.servers.kernel import (
    ASGIServer,
    PortInUseError,
    ServerStopWarning,
    WSGIServer,
    running_servers,
    serve_asgi,
    serve_wsgi,
    stop_server,
)
from labkit.servers.kernel import stop_all as stop_kernel_servers
from labkit.servers.process import (
    GranianProcess,
    GunicornProcess,
    ServerProcessError,
    UvicornProcess,
    serve_granian,
    serve_gunicorn,
    serve_uvicorn,
    stop_processes,
)
from labkit.servers.task_worker import TaskWorkerProcess, serve_task_worker
from labkit.servers.timing import RequestTiming


def stop_all() -> None:
    """Stop every server the lab started here: in-kernel ones and subprocess workers."""
    stop_kernel_servers()
    stop_processes()


__all__ = [
    "ASGIServer",
    "GranianProcess",
    "GunicornProcess",
    "PortInUseError",
    "RequestTiming",
    "ServerProcessError",
    "ServerStopWarning",
    "TaskWorkerProcess",
    "UvicornProcess",
    "WSGIServer",
    "running_servers",
    "serve_asgi",
    "serve_granian",
    "serve_gunicorn",
    "serve_task_worker",
    "serve_uvicorn",
    "serve_wsgi",
    "stop_all",
    "stop_processes",
    "stop_server",
]
