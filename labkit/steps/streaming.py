"""Probes of streamed (SSE) replies and status tallies, for step 07's checks.

Kept apart from `step_07` so that module holds the exercises themselves.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from labkit.exercises import Incorrect


def _events(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, or Incorrect naming the first malformed event."""
    payloads = []
    for raw in body.split("\n\n"):
        if not raw.strip():
            continue
        if not raw.startswith("data: "):
            raise Incorrect(
                "An SSE event must start with `data: ` and end with a blank line "
                "(`\\n\\n`); this one does not:",
                evidence=repr(raw[:200]),
            )
        payloads.append(raw.removeprefix("data: "))
    return payloads


@contextmanager
def _server_errors() -> Iterator[list[str]]:
    """Collect what uvicorn logs about a response that failed after it started.

    Django reports an exception raised while streaming (a sync `for` over an AsyncStream) to
    the server, not on `django.request`, so the probes' Django log misses it.
    """
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            error = record.exc_info[1] if record.exc_info else None
            lines.append(f"{type(error).__name__}: {error}" if error else record.getMessage())

    handler = Collect(level=logging.ERROR)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)


async def _read_stream(served: Any, prompt: str) -> dict[str, Any]:
    """POST `prompt` and read the response as it arrives: when the first event came, and all."""
    received = bytearray()
    run: dict[str, Any] = {"status": 0, "content_type": "", "first_s": 0.0, "error": ""}
    started = time.perf_counter()
    try:
        async with served.http.stream("POST", "/api/chat/", json={"prompt": prompt}) as response:
            run["status"] = response.status_code
            run["content_type"] = response.headers.get("content-type", "")
            async for part in response.aiter_bytes():
                received += part
                if not run["first_s"] and b'"delta"' in received and b"\n\n" in received:
                    run["first_s"] = time.perf_counter() - started
    except Exception as error:  # a stream that breaks off: whatever httpx2 raises for it
        run["error"] = f"{type(error).__name__}: {error}"
    run["total_s"] = time.perf_counter() - started
    run["first_s"] = run["first_s"] or run["total_s"]
    run["body"] = received.decode(errors="replace")
    return run


async def _reply_for(llm: Any, prompt: str) -> str:
    """The mock's reply to `prompt`, asked of the mock itself (a locked mock salts replies)."""
    from labkit.steps.probes import mock_settings

    with mock_settings(llm, latency_s=0):
        return await _ask_mock(llm, prompt)


async def _ask_mock(llm: Any, prompt: str) -> str:
    """One call at the mock, as the check (settings unchanged: a rate limit keeps its count)."""
    import openai
    from django.conf import settings

    from labproject.ai.llm import messages_for

    async with openai.AsyncOpenAI(
        base_url=llm.base_url, api_key=settings.LLM_API_KEY or "check", max_retries=0
    ) as client:
        completion = await client.chat.completions.create(
            model=settings.LLM_MODEL, messages=messages_for(prompt)
        )
    return completion.choices[0].message.content or ""


async def _upstream_end(llm: Any, before: dict[str, int], wait_s: float) -> str:
    """How the LLM call begun after `before` ended: "cancelled", "completed" or "running"."""
    import asyncio

    started = time.perf_counter()
    while time.perf_counter() - started < wait_s:
        stats = await asyncio.to_thread(llm.stats)
        if stats["cancelled_total"] > before["cancelled_total"]:
            return "cancelled"
        if stats["in_flight"] == 0 and stats["requests_total"] > before["requests_total"]:
            return "completed"
        await asyncio.sleep(0.05)
    return "running"


def _status_line(responses: list[Any]) -> str:
    """E.g. "5 × 200, 3 × 429"."""
    counts = Counter(r.status_code for r in responses)
    return ", ".join(f"{n} × {status}" for status, n in sorted(counts.items()))


async def _hang_up_mid_stream(served: Any, prompt: str) -> dict[str, Any]:
    """POST `prompt`, read until the first event, then close the connection (a reader leaving).

    Facts: the status, whether an event came before the hang-up, and when it came.
    """
    run: dict[str, Any] = {"status": 0, "first_s": 0.0, "error": ""}
    started = time.perf_counter()
    try:
        async with served.http.stream("POST", "/api/chat/", json={"prompt": prompt}) as response:
            run["status"] = response.status_code
            received = bytearray()
            async for part in response.aiter_bytes():
                received += part
                if b'"delta"' in received and b"\n\n" in received:
                    run["first_s"] = time.perf_counter() - started
                    break
    except Exception as error:  # a stream that breaks off before the first event
        run["error"] = f"{type(error).__name__}: {error}"
    return run
