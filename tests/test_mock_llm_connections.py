"""Connections are real TCP connections, and pooling saves the connect delay on each one."""

from __future__ import annotations

import asyncio
import time

import httpx2
import openai
import pytest

from labkit.mock_llm import MockLLM

USER = [{"role": "user", "content": "Count my connections."}]
CONNECT_DELAY_S = 0.2
N_CALLS = 8


@pytest.fixture(scope="module")
def llm():
    with MockLLM(preset="instant", connect_delay_s=CONNECT_DELAY_S) as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(llm):
    llm.reset(config=True)


async def client_per_call(llm):
    for _ in range(N_CALLS):
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test") as client:
            await client.chat.completions.create(model="mock-gpt", messages=USER)


async def one_shared_client(llm):
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test") as client:
        for _ in range(N_CALLS):
            await client.chat.completions.create(model="mock-gpt", messages=USER)


def timed(llm, scenario):
    llm.reset()
    started = time.perf_counter()
    asyncio.run(scenario(llm))
    elapsed = time.perf_counter() - started
    return elapsed, llm.stats()


def test_a_client_per_call_opens_a_connection_per_call_and_pooling_saves_the_delay(llm):
    per_call_s, per_call = timed(llm, client_per_call)
    shared_s, shared = timed(llm, one_shared_client)
    assert per_call["connections_total"] == N_CALLS
    assert shared["connections_total"] == 1
    assert per_call["requests_total"] == shared["requests_total"] == N_CALLS
    # Each avoided connection saves at least one connect delay (wide margin for a busy machine).
    # No upper bound: a client per call also pays for building the client (an SSL context,
    # ~50 ms of CPU), which grows without limit when other processes hold the CPUs.
    expected_saving = CONNECT_DELAY_S * (N_CALLS - 1)
    saving = per_call_s - shared_s
    assert saving / expected_saving > 0.6, (per_call_s, shared_s)
    assert shared_s < CONNECT_DELAY_S + 0.6


def test_connections_close_when_the_client_does(llm):
    async def main():
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test") as client:
            await client.chat.completions.create(model="mock-gpt", messages=USER)
            assert llm.stats()["connections_open"] == 1
        deadline = time.perf_counter() + 2
        while llm.stats()["connections_open"] and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)

    asyncio.run(main())
    stats = llm.stats()
    assert stats["connections_open"] == 0 and stats["connections_total"] == 1


def test_a_shared_client_never_exceeds_its_pool(llm):
    llm.configure(latency_s=0.2)
    pool = 3

    async def main():
        limits = httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
        http_client = openai.DefaultAsyncHttpxClient(limits=limits)
        async with openai.AsyncOpenAI(
            base_url=llm.base_url, api_key="sk-test", http_client=http_client
        ) as client:
            await asyncio.gather(
                *(
                    client.chat.completions.create(model="mock-gpt", messages=USER)
                    for _ in range(12)
                )
            )

    asyncio.run(main())
    stats = llm.stats()
    assert 1 <= stats["connections_total"] <= pool
    assert stats["connections_peak"] <= pool
    assert stats["in_flight_peak"] <= pool  # calls queue in the client's pool, not the server
    assert stats["requests_total"] == 12


def test_many_concurrent_calls_without_a_pool_limit_open_many_connections(llm):
    llm.configure(latency_s=0.3)

    async def main():
        async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test") as client:
            await asyncio.gather(
                *(
                    client.chat.completions.create(model="mock-gpt", messages=USER)
                    for _ in range(10)
                )
            )

    asyncio.run(main())
    stats = llm.stats()
    assert stats["connections_total"] == 10
    assert stats["in_flight_peak"] == 10


def test_sync_client_reuses_its_connection(llm):
    with openai.OpenAI(base_url=llm.base_url, api_key="sk-test") as client:
        for _ in range(3):
            client.chat.completions.create(model="mock-gpt", messages=USER)
        assert llm.stats()["connections_total"] == 1


def test_admin_calls_do_not_count_as_connections(llm):
    for _ in range(5):
        llm.stats()
        llm.config()
    assert llm.stats()["connections_total"] == 0
    assert llm.stats()["connections_open"] == 0


def test_a_reused_connection_answers_at_once(llm):
    """Guard against Nagle's algorithm: without TCP_NODELAY each call waits ~40 ms."""
    with httpx2.Client(base_url=llm.url) as raw:
        raw.get("/v1/models")
        started = time.perf_counter()
        for _ in range(20):
            raw.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
        per_call_s = (time.perf_counter() - started) / 20
    assert per_call_s < 0.02
