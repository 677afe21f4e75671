"""The worker app: the recommended chat with a reply cache, shared by uvicorn workers via Redis."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from labkit.servers import UvicornProcess, stop_processes
from tests.services import redis_service, services_state  # noqa: F401 (fixtures)

APP = "labkit.worker_app:application"


@pytest.fixture(autouse=True)
def stop_everything() -> Iterator[None]:
    yield
    stop_processes()


def ask(url: str, prompt: str) -> dict[str, Any]:
    """POST one prompt on a new connection (so any worker may take it); return the JSON."""
    request = urllib.request.Request(
        f"{url}/api/chat/",
        data=json.dumps({"prompt": prompt}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.mark.slow
def test_one_worker_answers_a_repeat_from_its_cache(mock_llm: Any) -> None:
    env = {"LAB_LLM_BASE_URL": mock_llm.base_url, "LAB_CACHE_URL": "locmem://"}
    with UvicornProcess(APP, workers=1, env=env, extra_args=["--factory"]) as server:
        mock_llm.reset()
        first = ask(server.url, "Cache me, one worker")
        second = ask(server.url, "Cache me, one worker")
        other = ask(server.url, "A different prompt")
    assert (first["cached"], second["cached"], other["cached"]) == (False, True, False)
    assert second["reply"] == first["reply"]
    assert mock_llm.stats()["requests_total"] == 2


@pytest.mark.slow
@pytest.mark.service("redis")
def test_two_workers_share_replies_through_redis(
    mock_llm: Any,
    redis_service: Any,  # noqa: F811 (fixture)
) -> None:
    env = {"LAB_LLM_BASE_URL": mock_llm.base_url, "LAB_CACHE_URL": redis_service.url}
    prompt = "Cache me, two workers"
    with UvicornProcess(APP, workers=2, env=env, extra_args=["--factory"]) as server:
        mock_llm.reset()
        first = ask(server.url, prompt)
        # Rounds of concurrent connections until the other worker has answered some.
        answers: list[dict[str, Any]] = []
        with ThreadPoolExecutor(8) as pool:
            for _ in range(10):
                answers += pool.map(lambda _: ask(server.url, prompt), range(8))
                if any(a["worker"] != first["worker"] for a in answers):
                    break
    others = [a for a in answers if a["worker"] != first["worker"]]
    assert first["cached"] is False
    assert others, f"every answer came from worker {first['worker']}"
    assert all(a["cached"] and a["reply"] == first["reply"] for a in others)
    assert mock_llm.stats()["requests_total"] == 1
