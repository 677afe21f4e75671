"""Clients that hang up mid-call cancel the upstream LLM call, and leave no task or connection.

The reference async views run under uvicorn in a thread of this process, so the test can count
the tasks on the server's loop and the SQLite handles the process holds. The mock answers in
5 s; the clients give up after their calls are in flight, and the mock must see every call
end (in_flight back to 0) within a second.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.fixtures.api import (
    OpenConnections,
    Tracebacks,
    calls_since,
    form_routes,
    last_call_id,
)

pytestmark = pytest.mark.usefixtures("mock_llm")

CLIENTS = 20
LATENCY_S = 5.0


class LoopProbe:
    """An ASGI wrapper that remembers the event loop the server runs requests on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope, receive, send) -> None:
        self.loop = asyncio.get_running_loop()
        await self.app(scope, receive, send)

    def tasks(self) -> int:
        """Tasks on the server's loop now, this probe's own excepted."""
        assert self.loop is not None

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=5)


@pytest.fixture(scope="module", params=["reference", "cached"])
def served(request, mock_llm):
    from labkit import reference
    from labkit.servers import ASGIServer

    probe = LoopProbe(reference.asgi_application())
    connections = OpenConnections()
    with form_routes(request.param), ASGIServer(probe, name="cancel") as server:
        yield server, probe, connections
    connections.close()


@pytest.fixture
def slow_llm(mock_llm):
    mock_llm.reset(config=True)
    mock_llm.configure(latency_s=LATENCY_S)
    yield mock_llm
    mock_llm.reset(config=True)


def wait_for(predicate, timeout: float, step: float = 0.02) -> float:
    """Poll until `predicate()` holds; return the seconds it took, or raise after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"still not true after {timeout:g} s: {predicate.__doc__}")
        time.sleep(step)
    return time.monotonic() - started


async def hang_up(url: str, requests: list[tuple[str, dict | None]], llm, in_flight: int) -> None:
    """Start the requests, wait until the mock holds `in_flight` calls, then drop every client."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        tasks = [
            asyncio.create_task(client.request(method, path, json=body))
            for method, path, body in requests
        ]
        deadline = time.monotonic() + 10
        while (await asyncio.to_thread(llm.stats))["in_flight"] < in_flight:
            assert time.monotonic() < deadline, "the calls never reached the mock"
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # Leaving the client closes every connection: the server sees the disconnects now.


def _baseline(server, probe, connections) -> tuple[int, int]:
    httpx.get(f"{server.url}/healthz").raise_for_status()  # the probe has seen the loop
    time.sleep(0.2)  # the health check's connection task ends once its socket is closed
    return probe.tasks(), connections()


@pytest.mark.parametrize("endpoint", ["chat", "summary"])
def test_hanging_up_cancels_the_upstream_calls(served, slow_llm, endpoint):
    server, probe, connections = served
    tasks_before, connections_before = _baseline(server, probe, connections)
    if endpoint == "chat":
        requests = [
            ("POST", "/api/chat/", {"prompt": f"bye {uuid.uuid4()}"}) for _ in range(CLIENTS)
        ]
    else:
        requests = [("GET", f"/api/documents/{1 + n % 3}/summary/", None) for n in range(CLIENTS)]
    mark = last_call_id()
    opened_before = connections.opened
    with Tracebacks() as tracebacks:
        asyncio.run(hang_up(server.url, requests, slow_llm, in_flight=CLIENTS))
        took = wait_for(lambda: slow_llm.stats()["in_flight"] == 0, timeout=1.0)
        wait_for(lambda: probe.tasks() <= tasks_before, timeout=2.0)
        wait_for(lambda: connections() <= connections_before, timeout=2.0)
    stats = slow_llm.stats()
    opened = connections.opened - opened_before
    print(
        f"\n{endpoint}: {CLIENTS} calls cancelled upstream {took * 1000:.0f} ms after the "
        f"hang-up; cancelled_total={stats['cancelled_total']} tasks={probe.tasks()} "
        f"db_connections={connections()} opened={opened} "
        f"(before: tasks={tasks_before}, db_connections={connections_before})"
    )
    assert stats["requests_total"] == CLIENTS
    if endpoint == "summary":  # each request read its chunks on a connection of its own
        assert connections.opened - opened_before >= CLIENTS
    assert stats["cancelled_total"] == CLIENTS
    assert tracebacks.messages() == []
    # A cancelled call was not answered: nothing to log, and certainly no half-written row.
    assert [call for call in calls_since(mark) if call.ok] == []


@pytest.mark.parametrize("served", ["cached"], indirect=True)  # only it coalesces calls
def test_a_coalesced_call_goes_on_for_the_callers_still_waiting(served, slow_llm):
    server = served[0]
    slow_llm.configure(latency_s=1.0)
    prompt = f"shared {uuid.uuid4()}"
    mark = last_call_id()

    async def two_callers() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as stays:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as leaves:
                first = asyncio.create_task(leaves.post("/api/chat/", json={"prompt": prompt}))
                await asyncio.sleep(0.3)
                second = asyncio.create_task(stays.post("/api/chat/", json={"prompt": prompt}))
                await asyncio.sleep(0.2)
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
            return await second

    response = asyncio.run(two_callers())
    assert response.status_code == 200, response.text
    assert slow_llm.stats()["requests_total"] == 1  # one upstream call served both
    [call] = calls_since(mark)
    assert call.ok and call.prompt == prompt


@pytest.mark.parametrize("served", ["cached"], indirect=True)  # only it coalesces calls
def test_hanging_up_on_a_coalesced_call_cancels_it(served, slow_llm):
    server, probe, connections = served
    tasks_before, connections_before = _baseline(server, probe, connections)
    same = {"prompt": f"everyone asks {uuid.uuid4()}"}
    asyncio.run(hang_up(server.url, [("POST", "/api/chat/", same)] * CLIENTS, slow_llm, 1))
    wait_for(lambda: slow_llm.stats()["in_flight"] == 0, timeout=1.0)
    wait_for(lambda: probe.tasks() <= tasks_before, timeout=2.0)
    assert connections() <= connections_before
    stats = slow_llm.stats()
    assert (stats["requests_total"], stats["cancelled_total"]) == (1, 1)
