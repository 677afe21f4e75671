"""The mock is never the bottleneck: 1-second calls at 150+ per second, little CPU each."""

from __future__ import annotations

import asyncio
import json
import time

from labkit.mock_llm import MockLLM

BODY = json.dumps(
    {"model": "mock-gpt", "messages": [{"role": "user", "content": "Summarize the document."}]}
).encode()
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n"
    b"Authorization: Bearer sk-test\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
) + BODY
USERS = 200
CALLS_EACH = 2
LATENCY_S = 1.0


async def user(port: int) -> None:
    """One keep-alive connection making calls back to back: a client far lighter than the SDK."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(CALLS_EACH):
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
    finally:
        writer.close()
        await writer.wait_closed()


def test_sustains_150_calls_per_second_of_one_second_latency():
    with MockLLM(preset="instant", latency_s=LATENCY_S) as llm:

        async def main():
            await asyncio.gather(*(user(llm.port) for _ in range(USERS)))

        started = time.perf_counter()
        asyncio.run(main())
        elapsed = time.perf_counter() - started
        stats = llm.stats()
    calls = USERS * CALLS_EACH
    rps = calls / elapsed
    ideal_rps = USERS / LATENCY_S
    cpu_per_call_s = stats["cpu_s"] / calls
    assert stats["requests_total"] == calls and stats["in_flight_peak"] == USERS
    assert rps >= 0.6 * ideal_rps, f"{rps:.0f} calls/s, ideal {ideal_rps:.0f}"
    # CPU is the robust measure on a shared machine: one core's worth of it would serve
    # 1 / cpu_per_call calls per second.
    assert cpu_per_call_s < 1 / 400, f"{cpu_per_call_s * 1000:.2f} ms CPU per call"
