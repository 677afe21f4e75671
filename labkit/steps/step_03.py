"""Step 03, connection pooling: one client per event loop, and a pool with limits and budgets.

Master: solutions/03_connection_pooling.ipynb. In the notebook:

    from labkit.steps.step_03 import q1, q2
"""

from __future__ import annotations

from typing import Any

from labkit.exercises import CheckError, Exercise, Incorrect

# Registers the experiments "step_03.client_per_loop" and "step_03.pool_burst".
from labkit.steps import pooling_probe  # noqa: F401

# 03.1: calls in rounds of WAVE at once; a shared pool reuses the first round's connections.
ROUNDS, WAVE = 4, 10
# 03.2: the pool size the exercise asks for, the burst that must respect it, and the budgets.
POOL_SIZE, CONCURRENT = 20, 60
MAX_CONNECT_S, MAX_POOL_S, MIN_READ_S = 5.0, 10.0, 30.0
CALL_LATENCY_S = 0.2  # the mock's latency while a check runs
QUIET = {"rpm": 0, "tpm": 0, "faults": {}, "fault": None, "latency_s": CALL_LATENCY_S}


class ClientPerLoop(Exercise):
    """`get_client()` returns one pooled `AsyncOpenAI` per running event loop.

    A correct answer, judged at the mock LLM (connections opened, calls in flight at once):
    - called from every task of a loop (10 tasks at once, 4 rounds), hands them one client:
      about 10 connections for 40 calls, not one client per task or per context;
    - lets a wave of 10 calls run side by side (its pool is not throttled to one connection);
    - in a second event loop (another thread, a test) hands out a client that works there,
      instead of the first loop's, whose connections belong to a closed loop.
    """

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
        "one client per task": """
_clients = weakref.WeakKeyDictionary()  # task -> its client


def get_client() -> openai.AsyncOpenAI:
    task = asyncio.current_task()
    if task not in _clients:
        _clients[task] = openai.AsyncOpenAI(**client_options())
    return _clients[task]
""",
        "a per-loop client on a one-connection pool": """
_clients = weakref.WeakKeyDictionary()  # event loop -> its client


def get_client() -> openai.AsyncOpenAI:
    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = openai.AsyncOpenAI(
            **client_options(),
            http_client=openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=1)),
        )
    return _clients[loop]
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, get_client) -> str:
        from labkit.steps.llmside import Seen
        from labkit.steps.probes import lab_mock, mock_settings
        from labkit.steps.subject import Raised, run_experiment

        llm = lab_mock()
        calls = ROUNDS * WAVE
        with mock_settings(llm, **QUIET):
            llm.reset()
            before = llm.stats()
            try:
                facts = await run_experiment(
                    "step_03.client_per_loop", get_client, rounds=ROUNDS, wave=WAVE
                )
            except Raised as error:
                raise Incorrect(
                    f"`get_client()` raised {error.type_name} in a fresh event loop.",
                    evidence=str(error)[:300],
                ) from None
            first = Seen(before, llm.stats())
            self._judge_first_loop(facts, first, calls)
            before = llm.stats()
            again = await run_experiment("step_03.client_per_loop", get_client, rounds=1, wave=3)
            second = Seen(before, llm.stats())
        failed = len(again.get("errors", []))
        if failed or second.calls < 3:
            raise Incorrect(
                f"The first event loop's {calls} calls worked, but of 3 calls from a second "
                "event loop (a new `asyncio.run`, as in another worker thread or a test) "
                f"{failed or 3 - second.calls} failed (the mock LLM received {second.calls}): "
                "`get_client()` handed out the first loop's client, whose pooled connections "
                "belong to a loop that is now closed. Keep one client per running loop.",
                evidence="\n".join(again.get("errors", [])) or "no error reported",
            )
        return (
            f"{calls} calls from one event loop ({ROUNDS} rounds of {WAVE} tasks at once, each "
            f"task asking `get_client()`) opened {first.connections} TCP connections with up to "
            f"{first.peak} calls in flight at once, and a second event loop got a client that "
            "works."
        )

    @staticmethod
    def _judge_first_loop(facts: dict[str, Any], seen: Any, calls: int) -> None:
        if not facts.get("is_async_openai"):
            raise Incorrect(
                f"`get_client()` returned {facts.get('type')}, expected an "
                "`openai.AsyncOpenAI` (the sync `OpenAI` client would block the event loop)."
            )
        measured = (
            f"{calls} calls ({ROUNDS} rounds of {WAVE} tasks at once, each asking "
            f"`get_client()`): the mock LLM answered {seen.calls}, over {seen.connections} "
            f"new TCP connection(s), with at most {seen.peak} in flight at once"
        )
        if seen.calls < calls:
            raise Incorrect(
                f"{measured}. The client talks to {facts.get('base_url')}: create it with "
                "`**client_options()` so it reaches the lab's LLM.",
                evidence="\n".join(facts.get("errors", [])) or "no error reported",
            )
        if seen.connections > 2 * WAVE:
            per = facts.get("clients_in_this_loop", 0)
            who = (
                f"The loop's tasks got {per} different clients: one per task or per call, "
                "each with its own pool. Key the cache by the running loop "
                "(`asyncio.get_running_loop()`), not the task or a context variable."
                if per > 1
                else "Is `get_client()` making a new client each time?"
            )
            raise Incorrect(
                f"{measured}; one pooled client per loop needs about {WAVE}, since later "
                f"rounds reuse the first round's connections. {who}"
            )
        if seen.peak < WAVE // 2:
            raise Incorrect(
                f"{measured}: the calls of a wave waited for each other. The client's pool "
                f"allows too few connections for {WAVE} calls at once: keep the SDK's default "
                "pool (or `max_connections` well above the calls you make at once)."
            )


class PoolLimits(Exercise):
    """`make_http_client()` returns an httpx2 client with a 20-connection pool and budgets.

    A correct answer, judged at the mock LLM with 60 calls at once through the SDK:
    - never lets more than 20 calls (or connections) reach the LLM at once, yet lets close to
      20 through: the limit is the pool's, not a throttle to a handful;
    - answers all 60: the 40 waiting for a pooled connection do not time out this soon;
    - (what the client says of itself, the sandbox's claim) connects within 5 s, gives up
      waiting for a pooled connection within 10 s, waits at least 30 s for an answer.
    """

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
        "a pool of 5": """
def make_http_client() -> httpx2.AsyncClient:
    return openai.DefaultAsyncHttpxClient(
        limits=httpx2.Limits(max_connections=5, max_keepalive_connections=5),
        timeout=httpx2.Timeout(60.0, connect=2.0, pool=5.0),
    )
""",
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
        from labkit.steps.llmside import Seen
        from labkit.steps.probes import lab_mock, mock_settings
        from labkit.steps.subject import Raised, run_experiment

        llm = lab_mock()
        with mock_settings(llm, **QUIET):
            llm.reset()
            before = llm.stats()
            try:
                facts = await run_experiment(
                    "step_03.pool_burst", make_http_client, concurrent=CONCURRENT
                )
            except Raised as error:
                raise Incorrect(
                    f"`make_http_client()` raised {error.type_name}.", evidence=str(error)[:300]
                ) from None
            seen = Seen(before, llm.stats())
        if facts.get("is_plain_httpx"):
            raise Incorrect(
                "`make_http_client()` returned a plain `httpx.AsyncClient`. openai 3 still "
                "accepts one, but its transport is httpcore 1.0.9, whose pool falls far "
                "behind httpx2's at a few hundred concurrent calls. Build on `openai."
                "DefaultAsyncHttpxClient` (an `httpx2.AsyncClient`) with `httpx2.Limits`."
            )
        if not facts.get("is_httpx2"):
            raise Incorrect(
                f"`make_http_client()` returned {facts.get('type')}, expected an "
                "`httpx2.AsyncClient` such as `openai.DefaultAsyncHttpxClient(...)`."
            )
        if seen.calls == 0:
            raise CheckError(
                "No call reached the lab's LLM: " + "; ".join(facts.get("errors", []))[:300]
            )
        measured = (
            f"{CONCURRENT} calls at once: the mock LLM saw at most {seen.peak} in flight over "
            f"{seen.connections} connections, and answered {seen.calls}"
        )
        problems = self._problems(facts)
        if seen.peak > POOL_SIZE or seen.connections > POOL_SIZE:
            problems.insert(0, f"the pool let {max(seen.peak, seen.connections)} through at once")
        elif seen.peak <= POOL_SIZE // 2:
            problems.insert(
                0, f"the pool let only {seen.peak} through at once, where {POOL_SIZE} may go"
            )
        if problems:
            raise Incorrect(
                "Not yet: " + "; ".join(problems) + ".", evidence=f"measured: {measured}"
            )
        if seen.calls < CONCURRENT or facts.get("answered", 0) < CONCURRENT:
            raise Incorrect(
                f"{measured}; {facts.get('answered')} answers came back to the client: the "
                "calls waiting for a pooled connection must not time out this soon.",
                evidence="\n".join(facts.get("errors", [])),
            )
        timeout = facts["timeout"]
        return (
            f"{measured}. Budgets: connect {timeout['connect']:g} s, pool {timeout['pool']:g} s, "
            f"read {timeout['read']:g} s."
        )

    @staticmethod
    def _problems(facts: dict[str, Any]) -> list[str]:
        problems = []
        limit = facts.get("max_connections")
        if limit is None:
            problems.append(
                "the pool's max_connections could not be read: pass "
                "`limits=httpx2.Limits(...)` to the client itself, not to a custom transport"
            )
        elif limit != POOL_SIZE:
            problems.append(f"max_connections is {limit}, expected {POOL_SIZE}")
        timeout = facts.get("timeout", {})
        connect, pool, read = timeout.get("connect"), timeout.get("pool"), timeout.get("read")
        if connect is None or connect > MAX_CONNECT_S:
            problems.append(
                f"the connect budget is {_seconds(connect)}; a reachable provider "
                f"connects in well under {MAX_CONNECT_S:g} s"
            )
        if pool is None or pool > MAX_POOL_S:
            problems.append(
                f"the pool budget is {_seconds(pool)}: with every connection busy a "
                f"request waits that long for one; give up within {MAX_POOL_S:g} s"
            )
        if read is not None and read < MIN_READ_S:
            problems.append(
                f"the read budget is {_seconds(read)}, shorter than a slow LLM answer; "
                f"keep it at least {MIN_READ_S:g} s"
            )
        return problems


def _seconds(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g} s"


q1 = ClientPerLoop()
q2 = PoolLimits()
