"""Step 03, connection pooling: one client per event loop, and a pool with limits and budgets.

Master: solutions/03_connection_pooling.ipynb. In the notebook:

    from labkit.steps.step_03 import q1, q2
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from labkit.exercises import CheckError, Exercise, Incorrect

# 03.1: calls in rounds of WAVE at once; a shared pool reuses the first round's connections.
ROUNDS, WAVE = 4, 10
# 03.2: the pool size the exercise asks for, the burst that must respect it, and the budgets.
POOL_SIZE, CONCURRENT = 20, 60
MAX_CONNECT_S, MAX_POOL_S, MIN_READ_S = 5.0, 10.0, 30.0
CALL_LATENCY = "0.2"  # seconds, per call, through the mock's x-mock-latency header


async def _ask(client: Any, model: str) -> Any:
    return await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Say hi."}],
        extra_headers={"x-mock-latency": CALL_LATENCY},
    )


def _same_url(a: object, b: object) -> bool:
    return str(a).rstrip("/") == str(b).rstrip("/")


class ClientPerLoop(Exercise):
    id = "03.1"
    title = "One pooled client per event loop"
    hints = [
        "Keep the clients in a `weakref.WeakKeyDictionary` keyed by "
        "`asyncio.get_running_loop()`: a loop that ends takes its entry with it.",
        "Look the running loop up; if it has no client yet, create "
        "`openai.AsyncOpenAI(**client_options())`, store it, and return the stored one.",
        "A module-level client, or `functools.lru_cache` on `get_client`, gives every loop "
        "the same client; its connections belong to the first loop, and the second fails.",
    ]
    wrong_answers = {
        "a new client per call": """
def get_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(**client_options())
""",
        "one module-level client": """
_client = openai.AsyncOpenAI(**client_options())


def get_client() -> openai.AsyncOpenAI:
    return _client
""",
        "lru_cache without the loop key": """
@functools.lru_cache(maxsize=1)
def get_client() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(**client_options())
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    def evaluate(self, get_client) -> str:
        from labkit.steps.probes import lab_mock

        llm = lab_mock()
        first_client, same, opened = asyncio.run(self._first_loop(get_client, llm))
        calls = ROUNDS * WAVE
        if opened > 2 * WAVE:
            raise Incorrect(
                f"{calls} calls ({ROUNDS} rounds of {WAVE} at once) opened {opened} TCP "
                f"connections at the LLM; one pooled client per loop needs about {WAVE}: the "
                "second round reuses the first round's connections. Is `get_client()` "
                "making a new client each time?"
            )
        if not same:
            raise Incorrect(
                "Two calls to `get_client()` in the same event loop returned two different "
                "clients: each has its own pool, so their connections are not shared."
            )
        second_client = asyncio.run(self._second_loop(get_client))
        return (
            f"{calls} calls from one event loop ({ROUNDS} rounds of {WAVE} at once) opened "
            f"{opened} TCP connections, and a second event loop got "
            f"{'its own client' if second_client is not first_client else 'a client'} "
            "that works."
        )

    @staticmethod
    async def _first_loop(get_client, llm) -> tuple[Any, bool, int]:
        import openai
        from django.conf import settings

        client = get_client()
        if not isinstance(client, openai.AsyncOpenAI):
            raise Incorrect(
                f"`get_client()` returned {type(client).__name__}, expected an "
                "`openai.AsyncOpenAI` (the sync `OpenAI` client would block the event loop)."
            )
        if not _same_url(client.base_url, settings.LLM_BASE_URL):
            raise Incorrect(
                f"The client talks to {client.base_url}, not the lab's LLM at "
                f"{settings.LLM_BASE_URL}: create it with `**client_options()`."
            )
        same = get_client() is client
        before = llm.stats()["connections_total"]
        for _ in range(ROUNDS):
            await asyncio.gather(*(_ask(get_client(), settings.LLM_MODEL) for _ in range(WAVE)))
        return client, same, llm.stats()["connections_total"] - before

    @staticmethod
    async def _second_loop(get_client) -> Any:
        from django.conf import settings

        client = get_client()
        try:
            await asyncio.gather(*(_ask(get_client(), settings.LLM_MODEL) for _ in range(3)))
        except Exception as error:  # whatever the shared pool raises in a foreign loop
            cause = error.__cause__ or error.__context__
            because = f"\ncaused by {type(cause).__name__}: {cause}" if cause else ""
            raise Incorrect(
                "The first event loop's calls worked, but from a second event loop (a new "
                "`asyncio.run`, as in another worker thread or a test) `get_client()` handed "
                "out a client that fails: its pooled connections belong to the first loop. "
                "Keep one client per running loop.",
                evidence=f"{type(error).__name__}: {error}{because}",
            ) from None
        return client


class PoolLimits(Exercise):
    id = "03.2"
    title = "A pool with limits and timeout budgets"
    hints = [
        "Start from `openai.DefaultAsyncHttpxClient(...)`: it is an `httpx2.AsyncClient` with "
        "the SDK's defaults, and takes `limits=` and `timeout=`.",
        f"`limits=httpx2.Limits(max_connections={POOL_SIZE}, "
        f"max_keepalive_connections={POOL_SIZE})`.",
        "`timeout=httpx2.Timeout(60.0, connect=2.0, pool=5.0)`: 60 s to read (and write) an "
        "answer, 2 s to connect, 5 s to wait for a free pooled connection.",
    ]
    wrong_answers = {
        "no limits": """
def make_http_client() -> httpx2.AsyncClient:
    return openai.DefaultAsyncHttpxClient(timeout=httpx2.Timeout(60.0, connect=2.0, pool=5.0))
""",
        "a plain httpx client": """
def make_http_client() -> httpx2.AsyncClient:
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=20),
        timeout=httpx.Timeout(60.0, connect=2.0, pool=5.0),
    )
""",
        "limits without a timeout": """
def make_http_client() -> httpx2.AsyncClient:
    return openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=20, max_keepalive_connections=20)
    )
""",
        "one timeout for everything": """
def make_http_client() -> httpx2.AsyncClient:
    return openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=20, max_keepalive_connections=20),
        timeout=httpx2.Timeout(5.0),
    )
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, make_http_client) -> str:
        import httpx
        import httpx2

        from labkit.steps.probes import lab_mock

        llm = lab_mock()
        http_client = make_http_client()
        if isinstance(http_client, httpx.AsyncClient):
            await http_client.aclose()
            raise Incorrect(
                "`make_http_client()` returned a plain `httpx.AsyncClient`. openai 3 still "
                "accepts one, but its transport is httpcore 1.0.9, whose pool falls far "
                "behind httpx2's at a few hundred concurrent calls. Build on `openai."
                "DefaultAsyncHttpxClient` (an `httpx2.AsyncClient`) with `httpx2.Limits`."
            )
        if not isinstance(http_client, httpx2.AsyncClient):
            raise Incorrect(
                f"`make_http_client()` returned {type(http_client).__name__}, expected an "
                "`httpx2.AsyncClient` such as `openai.DefaultAsyncHttpxClient(...)`."
            )
        try:
            peak, answered, elapsed = await self._burst(http_client, llm)
        finally:
            await http_client.aclose()
        measured = (
            f"{CONCURRENT} calls at once: at most {peak} in flight at the LLM, {answered} "
            f"answered in {elapsed:.2f} s"
        )
        problems = self._problems(http_client)
        if peak > POOL_SIZE:
            problems.insert(0, f"the pool let {peak} calls through at once")
        if problems:
            raise Incorrect(
                "Not yet: " + "; ".join(problems) + ".", evidence=f"measured: {measured}"
            )
        if answered < CONCURRENT:
            raise Incorrect(
                f"Only {answered} of {CONCURRENT} calls answered: the calls waiting for a "
                "pooled connection must not time out this soon.",
                evidence=f"measured: {measured}",
            )
        timeout = http_client.timeout
        return (
            f"{measured}. Budgets: connect {timeout.connect:g} s, pool {timeout.pool:g} s, "
            f"read {timeout.read:g} s."
        )

    @staticmethod
    async def _burst(http_client: Any, llm: Any) -> tuple[int, int, float]:
        import openai
        from django.conf import settings

        # No timeout= here: given one, the SDK would send it with every request and override
        # the budgets of the learner's client.
        client = openai.AsyncOpenAI(
            base_url=settings.LLM_BASE_URL,
            api_key=settings.LLM_API_KEY,
            http_client=http_client,
            max_retries=0,
        )
        llm.reset()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(_ask(client, settings.LLM_MODEL) for _ in range(CONCURRENT)),
            return_exceptions=True,
        )
        elapsed = time.perf_counter() - started
        stats = llm.stats()
        answered = sum(not isinstance(r, BaseException) for r in results)
        if answered == 0:
            error = next(r for r in results if isinstance(r, BaseException))
            raise CheckError(f"No call reached the lab's LLM: {type(error).__name__}: {error}")
        return stats["in_flight_peak"], answered, elapsed

    @staticmethod
    def _problems(http_client: Any) -> list[str]:
        problems = []
        pool = getattr(getattr(http_client, "_transport", None), "_pool", None)
        limit = getattr(pool, "_max_connections", None)
        if limit is None:
            problems.append(
                "the pool's max_connections could not be read: pass "
                "`limits=httpx2.Limits(...)` to the client itself, not to a custom transport"
            )
        elif limit != POOL_SIZE:
            problems.append(f"max_connections is {limit}, expected {POOL_SIZE}")
        timeout = http_client.timeout
        if timeout.connect is None or timeout.connect > MAX_CONNECT_S:
            problems.append(
                f"the connect budget is {_seconds(timeout.connect)}; a reachable provider "
                f"connects in well under {MAX_CONNECT_S:g} s"
            )
        if timeout.pool is None or timeout.pool > MAX_POOL_S:
            problems.append(
                f"the pool budget is {_seconds(timeout.pool)}: with every connection busy a "
                f"request waits that long for one; give up within {MAX_POOL_S:g} s"
            )
        if timeout.read is not None and timeout.read < MIN_READ_S:
            problems.append(
                f"the read budget is {_seconds(timeout.read)}, shorter than a slow LLM answer; "
                f"keep it at least {MIN_READ_S:g} s"
            )
        return problems


def _seconds(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g} s"


q1 = ClientPerLoop()
q2 = PoolLimits()
