"""The Django Tasks worker as a subprocess: it runs what the views enqueue, stops gracefully,
fails to start with its cause, and dies with the process that started it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2
import psutil
import pytest

from labkit.servers import ServerProcessError, TaskWorkerProcess, serve_task_worker, stop_processes


@pytest.fixture(autouse=True)
def stop_everything() -> Iterator[None]:
    yield
    stop_processes()


@pytest.fixture
def worker_env(mock_llm) -> Iterator[dict[str, str]]:
    """The worker reads the same settings as this process, pointed at the test's mock."""
    latency_s = mock_llm.config()["latency_s"]
    yield {"LAB_LLM_BASE_URL": mock_llm.base_url}
    mock_llm.configure(latency_s=latency_s)


def _status(task_id: str) -> str:
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.values_list("status", flat=True).get(pk=task_id)


def _wait_status(task_id: str, wanted: set[str], timeout_s: float = 20.0) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := _status(task_id)) not in wanted and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def test_the_views_enqueue_and_the_worker_runs_the_summary(worker_env) -> None:
    from labkit.servers import ASGIServer
    from labproject.asgi import application

    worker = serve_task_worker(env=worker_env)
    with ASGIServer(application) as server, httpx2.Client(base_url=server.url) as http:
        accepted = http.post("/api/documents/1/summarise/")
        assert accepted.status_code == 202, accepted.text
        task_id = accepted.json()["task_id"]
        assert accepted.headers["Location"] == f"/api/tasks/{task_id}/"
        deadline = time.monotonic() + 20
        while (answer := http.get(f"/api/tasks/{task_id}/").json())["status"] != "SUCCESSFUL":
            assert answer["status"] in {"READY", "RUNNING"}, answer
            assert time.monotonic() < deadline, f"not run in 20 s; worker log:\n{worker.logs()}"
            time.sleep(0.05)
        assert answer["summary"]["document"] == 1
        assert answer["summary"]["reply"]
        assert http.post("/api/documents/999999/summarise/").status_code == 404
        assert http.get("/api/tasks/00000000-0000-0000-0000-000000000000/").status_code == 404
        assert http.get("/api/tasks/not-an-id/").status_code == 404
        assert http.get("/api/documents/1/summarise/").status_code == 405


def test_a_failing_task_is_stored_failed_and_polled_as_such(worker_env) -> None:
    from django.test import Client

    from labproject.ai.models import Document
    from labproject.ai.tasks import summarise_document

    gone = Document.objects.create(title="deleted before the worker gets to it")
    result = summarise_document.enqueue(gone.pk)
    gone.delete()
    serve_task_worker(env=worker_env)
    assert _wait_status(result.id, {"SUCCESSFUL", "FAILED"}) == "FAILED"
    answer = Client().get(f"/api/tasks/{result.id}/").json()
    assert answer == {
        "task_id": result.id,
        "status": "FAILED",
        "error": "labproject.ai.models.Document.DoesNotExist",
    }


def test_stop_lets_the_running_task_finish(worker_env, mock_llm) -> None:
    from labproject.ai.tasks import summarise_document

    mock_llm.configure(latency_s=1.0)
    worker = serve_task_worker(env=worker_env)
    result = summarise_document.enqueue(1)
    assert _wait_status(result.id, {"RUNNING", "SUCCESSFUL"}) == "RUNNING"
    pid = worker.pid
    worker.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert _status(result.id) == "SUCCESSFUL"


def test_a_worker_that_cannot_start_names_the_cause(worker_env) -> None:
    worker = TaskWorkerProcess(env=worker_env, extra_args=["--backend", "nowhere"])
    with pytest.raises(ServerProcessError, match=r"(?s)db_worker.*nowhere"):
        worker.start()
    assert not worker.running


KILLED_OWNER = """
import json, os, sys
from labkit.servers import serve_task_worker
worker = serve_task_worker()
print(json.dumps([worker.pid]), flush=True)
os.kill(os.getpid(), 9)
"""


def test_a_killed_owner_takes_its_worker_with_it(worker_env) -> None:
    owner = subprocess.run(
        [sys.executable, "-c", KILLED_OWNER],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **worker_env},
    )
    assert owner.returncode == -9, owner.stderr
    (pid,) = json.loads(owner.stdout.splitlines()[-1])
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
