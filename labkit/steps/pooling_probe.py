"""03's experiments: the learner's client factories driven beside the learner's code.

Registered when labkit.steps.step_03 is imported (the sandbox imports it to find them). Each
returns JSON facts, which are claims when grading: the checks judge the mock LLM's counters.
"""

from __future__ import annotations

import asyncio
from typing import Any

from labkit.steps.subject import experiment


async def _ask(client: Any) -> Any:
    from django.conf import settings

    return await client.chat.completions.create(
        model=settings.LLM_MODEL, messages=[{"role": "user", "content": "Say hi."}]
    )


def _error(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    because = f" (caused by {type(cause).__name__}: {cause})" if cause else ""
    return f"{type(error).__name__}: {error}{because}"[:400]


@experiment("step_03.client_per_loop")
async def client_per_loop(get_client: Any, *, rounds: int, wave: int) -> dict[str, Any]:
    """In a new event loop (its own thread): `rounds` waves of `wave` tasks, each calling
    `get_client()` itself and making one LLM call. Facts: the client, and what failed."""

    async def one_loop() -> dict[str, Any]:
        import openai

        client = get_client()
        facts: dict[str, Any] = {
            "type": f"{type(client).__module__}.{type(client).__qualname__}",
            "is_async_openai": isinstance(client, openai.AsyncOpenAI),
            "base_url": str(getattr(client, "base_url", "")),
            "same_in_a_task": get_client() is client,
            "errors": [],
        }
        seen: set[int] = set()

        async def task() -> None:
            mine = get_client()
            seen.add(id(mine))
            await _ask(mine)

        for _ in range(rounds):
            results = await asyncio.gather(*(task() for _ in range(wave)), return_exceptions=True)
            facts["errors"] += [_error(r) for r in results if isinstance(r, BaseException)]
        facts["clients_in_this_loop"] = len(seen)
        facts["errors"] = facts["errors"][:3]
        return facts

    return await asyncio.to_thread(asyncio.run, one_loop())


@experiment("step_03.pool_burst")
async def pool_burst(make_http_client: Any, *, concurrent: int) -> dict[str, Any]:
    """`concurrent` LLM calls at once through an SDK client on `make_http_client()`'s pool."""
    import httpx
    import httpx2
    import openai
    from django.conf import settings

    http_client = make_http_client()
    facts: dict[str, Any] = {
        "type": f"{type(http_client).__module__}.{type(http_client).__qualname__}",
        "is_httpx2": isinstance(http_client, httpx2.AsyncClient),
        "is_plain_httpx": isinstance(http_client, httpx.AsyncClient),
    }
    if not facts["is_httpx2"]:
        if hasattr(http_client, "aclose"):
            await http_client.aclose()
        return facts
    pool = getattr(getattr(http_client, "_transport", None), "_pool", None)
    facts["max_connections"] = getattr(pool, "_max_connections", None)
    timeout = http_client.timeout
    facts["timeout"] = {"connect": timeout.connect, "pool": timeout.pool, "read": timeout.read}
    # No timeout= here: given one, the SDK would send it with every request and override
    # the budgets of the learner's client.
    client = openai.AsyncOpenAI(
        base_url=settings.LLM_BASE_URL,
        api_key=settings.LLM_API_KEY,
        http_client=http_client,
        max_retries=0,
    )
    try:
        results = await asyncio.gather(
            *(_ask(client) for _ in range(concurrent)), return_exceptions=True
        )
    finally:
        await http_client.aclose()
    errors = [r for r in results if isinstance(r, BaseException)]
    facts["answered"] = len(results) - len(errors)
    facts["errors"] = [_error(e) for e in errors[:3]]
    return facts
