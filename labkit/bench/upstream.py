"""Calls to the LLM itself, without a web server: connection reuse and coalescing.

Both run on one event loop in this process against the mock, whose stats count TCP
connections and requests: a client per request opens a connection (and pays the connect
delay that stands in for TLS) every call; one pooled client per loop reuses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from labkit.bench.plan import Plan
from labkit.bench.report import row, section

CONCURRENCY = 50  # calls in flight at once, like 50 users of an async view
CALL_LATENCY_S = 0.2
CONNECT_DELAY_S = 0.15  # the mock's "fast" preset: a TLS handshake's worth
PROMPT = "Explain async views in Django in two sentences."


def _pooled_client() -> Any:
    import openai

    from labkit.reference import POOL_LIMITS
    from labproject.ai.llm import client_options

    http_client = openai.DefaultAsyncHttpxClient(limits=POOL_LIMITS)
    return openai.AsyncOpenAI(**client_options(), http_client=http_client)


def _ask(client: Any, prompt: str) -> Awaitable[Any]:
    from labproject.ai.llm import chat_options, messages_for

    return client.chat.completions.create(**chat_options(), messages=messages_for(prompt))


def llm_connections(plan: Plan, mock: Any) -> dict[str, Any]:
    """TCP connections, wall time and CPU for `plan.calls` LLM calls, per 1000 calls."""
    import openai

    from labkit.meters import measure
    from labproject.ai.llm import client_options

    mock.configure(latency_s=CALL_LATENCY_S, connect_delay_s=CONNECT_DELAY_S)

    async def per_request(i: int) -> Any:
        async with openai.AsyncOpenAI(**client_options()) as client:
            return await _ask(client, f"{PROMPT} #{i}")

    async def pooled() -> None:
        client = _pooled_client()
        try:
            await _bounded(lambda i: _ask(client, f"{PROMPT} #{i}"), plan.calls)
        finally:
            await client.close()

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "client-per-request": lambda: _bounded(per_request, plan.calls),
        "pooled-client": pooled,
    }
    per_1000 = 1000 / plan.calls
    rows = []
    for name, way in ways.items():
        with measure(name, llm=mock) as meter:
            asyncio.run(way())
        # Little's law with each call's own time in the system: a new connection adds its delay.
        held_s = CALL_LATENCY_S + (CONNECT_DELAY_S if name == "client-per-request" else 0)
        rows.append(row(
            name, users=CONCURRENCY, latency_s=CALL_LATENCY_S, workers=1,
            duration_s=meter.wall_s, calls=plan.calls,
            connections=meter.llm["connections_total"],
            connections_per_1000=round(meter.llm["connections_total"] * per_1000, 1),
            wall_s_per_1000=round(meter.wall_s * per_1000, 2),
            cpu_ms_per_call=round(meter.cpu_s * 1000 / plan.calls, 2),
            rps=round(plan.calls / meter.wall_s, 2),
            bound_rps=round(CONCURRENCY / held_s, 2),
        ))  # fmt: skip
    notes = [
        f"{plan.calls} chat completions, {CONCURRENCY} in flight at once on one event loop; "
        f"mock latency_s {CALL_LATENCY_S:g}, connect delay {CONNECT_DELAY_S:g} s per new TCP "
        "connection (a TLS handshake's worth).",
        "pooled-client: one AsyncOpenAI with labkit.reference.POOL_LIMITS for the loop; "
        "client-per-request: `async with AsyncOpenAI(...)` around each call. bound_rps = "
        "in-flight calls / (latency_s + connect delay when each call connects).",
    ]
    columns = ["name", "users", "latency_s", "calls", "connections", "connections_per_1000",
               "wall_s_per_1000", "cpu_ms_per_call", "rps", "bound_rps"]  # fmt: skip
    return section(
        "LLM connections",
        "TCP connections and wall time per 1000 LLM calls: a client per request vs one pool.",
        columns, rows, notes=notes,
    )  # fmt: skip


async def _bounded(call: Callable[[int], Awaitable[Any]], count: int) -> None:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(count)))


def single_flight(plan: Plan, mock: Any, callers: int = 100) -> dict[str, Any]:
    """Upstream calls for `callers` concurrent identical prompts, with and without SingleFlight."""
    from labkit.meters import measure
    from labkit.singleflight import SingleFlight

    latency_s = 0.5
    mock.configure(latency_s=latency_s, connect_delay_s=0)

    async def crowd(coalesce: bool) -> int:
        client, flights = _pooled_client(), SingleFlight()

        async def ask() -> Any:
            if coalesce:
                return await flights.do(PROMPT, lambda: _ask(client, PROMPT))
            return await _ask(client, PROMPT)

        try:
            replies = await asyncio.gather(*(ask() for _ in range(callers)))
        finally:
            await client.close()
        return len(replies)

    rows = []
    for name, coalesce in (("without single-flight", False), ("with single-flight", True)):
        with measure(name, llm=mock) as meter:
            answered = asyncio.run(crowd(coalesce))
        rows.append(row(
            name, users=callers, latency_s=latency_s, workers=1, duration_s=meter.wall_s,
            callers=callers, answered=answered, upstream_calls=meter.llm["requests_total"],
            connections=meter.llm["connections_total"],
            upstream_in_flight_peak=meter.llm_in_flight_peak,
        ))  # fmt: skip
    notes = [
        f"{callers} coroutines ask the same uncached prompt at once on one event loop (one "
        "pooled client); with single-flight they share labkit.singleflight.SingleFlight.do "
        "under one key, so only the first caller's call goes upstream.",
    ]
    columns = ["name", "users", "latency_s", "duration_s", "answered", "upstream_calls",
               "connections", "upstream_in_flight_peak"]  # fmt: skip
    return section(
        "single-flight",
        "Upstream LLM calls for 100 concurrent identical prompts.",
        columns, rows, notes=notes,
    )  # fmt: skip
