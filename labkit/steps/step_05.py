"""Step 05, caching LLM answers: a key that covers the whole request, and one call per stampede.

Master: solutions/05_caching.ipynb. In the notebook:

    from labkit.steps.step_05 import q1, q2
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import secrets
import threading
from collections.abc import Callable
from typing import Any

from labkit.exercises import Exercise, Incorrect

# 05.1: the request every variant departs from.
BASE_MODEL = "gpt-4o"
BASE_MESSAGES = [
    {"role": "system", "content": "You answer in one short paragraph."},
    {"role": "user", "content": "When should I cache an LLM answer?"},
]
BASE_PARAMS = {"temperature": 0.0, "max_tokens": 200}
MAX_KEY_CHARS = 250  # memcached's limit; Django warns above it whatever the backend

# 05.2: how many identical prompts arrive at once, and how slow the LLM answers meanwhile.
STAMPEDE = 20
DISTINCT = 5
LATENCY_S = 0.3
OTHER_MODEL = "gpt-4o-mini"


def _variants(version_bump: Callable[[], Any]) -> list[tuple[str, dict[str, Any]]]:
    """Requests that must get a key of their own: (what changed, cache_key's arguments)."""
    system, user = BASE_MESSAGES

    def request(model=BASE_MODEL, messages=BASE_MESSAGES, **params) -> dict[str, Any]:
        return {"model": model, "messages": messages, "params": {**BASE_PARAMS, **params}}

    return [
        ("another model", request(model=OTHER_MODEL)),
        ("temperature 0.0 → 0.9", request(temperature=0.9)),
        ("max_tokens 200 → 20", request(max_tokens=20)),
        (
            "another system prompt",
            request(messages=[{**system, "content": "Answer in French."}, user]),
        ),
        ("another user prompt", request(messages=[system, {**user, "content": "When not?"}])),
        (
            "an earlier turn in the conversation",
            request(
                messages=[
                    system,
                    {"role": "user", "content": "Hi."},
                    {"role": "assistant", "content": "Hello!"},
                    user,
                ]
            ),
        ),
        ("KEY_VERSION bumped", {**request(), "before": version_bump}),
    ]


def _same_request_again() -> list[tuple[str, dict[str, Any]]]:
    """Requests equal to the base one, written differently: they must share its key."""
    system, user = BASE_MESSAGES
    reordered = {"max_tokens": BASE_PARAMS["max_tokens"], "temperature": BASE_PARAMS["temperature"]}
    return [
        ("the same request again", {}),
        ("parameters passed in another order", {"params": reordered}),
        (
            "message fields in another order",
            {"messages": [{"content": m["content"], "role": m["role"]} for m in BASE_MESSAGES]},
        ),
        ("an equal copy of the messages", {"messages": copy.deepcopy(BASE_MESSAGES)}),
    ]


def _key_problem(key: object) -> str | None:
    if not isinstance(key, str):
        return f"`cache_key` returned {type(key).__name__} ({key!r:.80}); a cache key is a str."
    if len(key) > MAX_KEY_CHARS:
        return (
            f"The key is {len(key)} characters long: memcached refuses keys over "
            f"{MAX_KEY_CHARS} (Django warns for every backend). Hash the request (sha256 "
            "hexdigest) instead of putting it in the key."
        )
    if any(ord(c) < 33 or ord(c) == 127 for c in key):
        return (
            "The key holds spaces or control characters, which memcached refuses (Django warns "
            f"for every backend): {key[:80]!r}. Hash the request instead."
        )
    return None


class CacheKey(Exercise):
    id = "05.1"
    title = "A cache key for the whole request"
    hints = [
        "Everything that can change the answer goes in: `KEY_VERSION`, the model, all the "
        "messages (system prompt and earlier turns too) and every parameter.",
        "Make it canonical: `json.dumps([KEY_VERSION, model, messages, params], "
        "sort_keys=True, separators=(',', ':'))` is the same text for the same request, "
        "whatever order the dict keys came in; `str(params)` is not.",
        "Then hash it, so the key is short and holds no spaces: "
        '`f"llm:{hashlib.sha256(text.encode()).hexdigest()}"`.',
    ]
    wrong_answers = {
        "the prompt only (the seed's key)": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    prompt = messages[-1]["content"]
    return f"ai:{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"
""",
        "model and messages, not the parameters": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    text = json.dumps([KEY_VERSION, model, messages], sort_keys=True)
    return f"llm:{hashlib.sha256(text.encode()).hexdigest()}"
""",
        "str() of the request": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    text = str((KEY_VERSION, model, messages, params))
    return f"llm:{hashlib.sha256(text.encode()).hexdigest()}"
""",
        "a timestamp in the key": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    request = {"v": KEY_VERSION, "model": model, "messages": messages, "params": params}
    text = json.dumps(request, sort_keys=True) + str(time.time())
    return f"llm:{hashlib.sha256(text.encode()).hexdigest()}"
""",
        "no version": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    text = json.dumps([model, messages, params], sort_keys=True)
    return f"llm:{hashlib.sha256(text.encode()).hexdigest()}"
""",
        "the JSON itself as the key": """
def cache_key(model: str, messages: list[dict], **params) -> str:
    return "llm:" + json.dumps([KEY_VERSION, model, messages, params], sort_keys=True)
""",
    }

    def evaluate(self, cache_key) -> str:
        def key_of(request: dict[str, Any]) -> str:
            merged = {"model": BASE_MODEL, "messages": BASE_MESSAGES, "params": BASE_PARAMS}
            merged.update({k: v for k, v in request.items() if k != "before"})
            key = cache_key(merged["model"], copy.deepcopy(merged["messages"]), **merged["params"])
            problem = _key_problem(key)
            if problem:
                raise Incorrect(problem)
            return key

        base = key_of({})
        rows, wrong = [], []
        for what, request in _same_request_again():
            same = key_of(request) == base
            rows.append(f"{'✓' if same else '✗'} {what}: {'same key' if same else 'NEW key'}")
            if not same:
                wrong.append(f"{what} got a different key")
        namespace = cache_key.__globals__
        saved = namespace.get("KEY_VERSION", _MISSING)
        try:
            for what, request in _variants(lambda: _bump(namespace, saved)):
                if "before" in request:
                    request["before"]()
                changed = key_of(request) != base
                rows.append(
                    f"{'✓' if changed else '✗'} {what}: {'new key' if changed else 'SAME key'}"
                )
                if not changed:
                    wrong.append(f"{what} kept the same key")
        finally:
            if saved is _MISSING:
                namespace.pop("KEY_VERSION", None)
            else:
                namespace["KEY_VERSION"] = saved
        table = "\n".join(rows)
        if wrong:
            raise Incorrect(
                f"{len(wrong)} of {len(rows)} comparisons went wrong: "
                + "; ".join(wrong)
                + ". A key must change with everything that changes the answer, and with "
                "nothing else. Each request below is compared with the base one "
                f"({BASE_MODEL}, a system and a user message, {BASE_PARAMS}):",
                evidence=table,
            )
        return (
            f"All {len(rows)} comparisons hold: equal requests share a key, and each change "
            f"that alters the answer makes a new one. Your key: `{base}`\n\n{table}"
        )


_MISSING = object()


def _bump(namespace: dict[str, Any], saved: object) -> None:
    if saved is _MISSING:
        raise Incorrect(
            "`KEY_VERSION` is not defined: keep the line `KEY_VERSION = 1` of the exercise "
            "cell and put it in the key, so that bumping it retires every cached answer."
        )
    namespace["KEY_VERSION"] = saved + 1 if isinstance(saved, int) else f"{saved}+1"


class _WatchedCache:
    """Stands in for the learner's `llm_cache` during the check: notes how it is used.

    A sync call (`get`, `set`, ...) made on a thread that runs an event loop stalls that loop
    for a network round trip with Redis; the async methods are passed through and counted.
    """

    SYNC = ("get", "set", "add", "get_or_set", "get_many", "set_many", "delete", "has_key")
    WRITES = ("aset", "aadd", "aset_many", "aget_or_set")

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self.sync_on_loop: list[str] = []
        self.async_calls = 0
        self.writes = 0
        self.timeouts: list[object] = []

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._cache, name)
        if name in self.SYNC:
            return self._sync(name, value)
        if name.startswith("a") and inspect.iscoroutinefunction(value):
            return self._async(name, value)
        return value

    def _sync(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # a worker thread (sync_to_async): the loop is not held
            else:
                thread = threading.current_thread().name
                self.sync_on_loop.append(f"llm_cache.{name}() on thread {thread}, in its loop")
            return method(*args, **kwargs)

        return call

    def _async(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.async_calls += 1
            if name in self.WRITES:
                self.writes += 1
                if name in ("aset", "aadd"):
                    self.timeouts.append(args[2] if len(args) > 2 else kwargs.get("timeout", ...))
            return await method(*args, **kwargs)

        return call


class SingleFlightCache(Exercise):
    id = "05.2"
    title = "A cached reply with one upstream call per stampede"
    hints = [
        "First `await llm_cache.aget(key)`; on a miss, look for a call already in flight for "
        "that key in a dict (`_in_flight`) before starting one: only the first caller asks "
        "the LLM, the others await the same `asyncio.Task`.",
        "The task asks the LLM (`ask_llm`) and stores the reply with `await llm_cache.aset(key, "
        "reply, timeout=REPLY_TTL_S)`; remove the dict entry when the task is done "
        "(`task.add_done_callback(...)`), or a failure is served forever.",
        "Let an exception from the LLM propagate: every waiter gets it, nothing is stored, and "
        "the next caller tries again. Never store an error text in the cache.",
    ]
    wrong_answers = {
        "cache without coalescing": """
async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    reply = await llm_cache.aget(key)
    if reply is None:
        reply = await ask_llm(model, messages, **params)
        await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    return reply
""",
        "sync cache calls in async code": """
_in_flight = {}


async def _ask_and_store(key, model, messages, params):
    reply = await ask_llm(model, messages, **params)
    llm_cache.set(key, reply, timeout=REPLY_TTL_S)
    return reply


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    reply = llm_cache.get(key)
    if reply is not None:
        return reply
    slot = (asyncio.get_running_loop(), key)
    task = _in_flight.get(slot)
    if task is None:
        task = asyncio.ensure_future(_ask_and_store(key, model, messages, params))
        _in_flight[slot] = task
        task.add_done_callback(lambda _: _in_flight.pop(slot, None))
    return await asyncio.shield(task)
""",
        "an error text cached as the reply": """
_in_flight = {}


async def _ask_and_store(key, model, messages, params):
    try:
        reply = await ask_llm(model, messages, **params)
    except openai.OpenAIError:
        reply = "Sorry, the assistant is unavailable right now."
    await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    return reply


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    reply = await llm_cache.aget(key)
    if reply is not None:
        return reply
    slot = (asyncio.get_running_loop(), key)
    task = _in_flight.get(slot)
    if task is None:
        task = asyncio.ensure_future(_ask_and_store(key, model, messages, params))
        _in_flight[slot] = task
        task.add_done_callback(lambda _: _in_flight.pop(slot, None))
    return await asyncio.shield(task)
""",
        "in-flight entries never removed": """
_in_flight = {}


async def _ask_and_store(key, model, messages, params):
    reply = await ask_llm(model, messages, **params)
    await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    return reply


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    reply = await llm_cache.aget(key)
    if reply is not None:
        return reply
    slot = (asyncio.get_running_loop(), key)
    if slot not in _in_flight:
        _in_flight[slot] = asyncio.ensure_future(_ask_and_store(key, model, messages, params))
    return await asyncio.shield(_in_flight[slot])
""",
        "one lock around everything": """
_lock = asyncio.Lock()


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    async with _lock:
        reply = await llm_cache.aget(key)
        if reply is None:
            reply = await ask_llm(model, messages, **params)
            await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    return reply
""",
        "the prompt alone as the key": """
_in_flight = {}


async def _ask_and_store(key, model, messages, params):
    reply = await ask_llm(model, messages, **params)
    await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    return reply


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = f"ai:{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"
    reply = await llm_cache.aget(key)
    if reply is not None:
        return reply
    slot = (asyncio.get_running_loop(), key)
    task = _in_flight.get(slot)
    if task is None:
        task = asyncio.ensure_future(_ask_and_store(key, model, messages, params))
        _in_flight[slot] = task
        task.add_done_callback(lambda _: _in_flight.pop(slot, None))
    return await asyncio.shield(task)
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, cached_reply) -> str:
        from labkit.steps.probes import lab_mock, mock_settings

        if not inspect.iscoroutinefunction(cached_reply):
            raise Incorrect(
                "`cached_reply` is a plain `def`: declare it `async def`, so that waiting for "
                "the LLM or the cache does not hold a thread."
            )
        from django.core.cache.backends.locmem import LocMemCache

        llm = lab_mock()
        # The function gets an empty cache of the check's own as `llm_cache`: no entry of an
        # earlier run can answer, and a Redis stopped by the notebook's last cell (the grader
        # checks after it) does not matter. Which backend it is doesn't change the logic.
        namespace = cached_reply.__globals__
        saved = namespace.get("llm_cache", _MISSING)
        watched = _WatchedCache(LocMemCache(f"check-05.2-{secrets.token_hex(4)}", {}))
        namespace["llm_cache"] = watched
        try:
            with mock_settings(llm, latency_s=LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
                return await _Trial(cached_reply, llm, watched).run()
        finally:
            if saved is _MISSING:
                namespace.pop("llm_cache", None)
            else:
                namespace["llm_cache"] = saved


class _Trial:
    """The phases of the 05.2 check, each counting the calls that reached the LLM."""

    def __init__(self, cached_reply: Any, llm: Any, watched: _WatchedCache) -> None:
        self.cached_reply = cached_reply
        self.llm = llm
        self.watched = watched
        self.tag = f"check 05.2 {secrets.token_hex(4)}"

    async def _calls(self, coros: list[Any]) -> tuple[list[Any], int, int]:
        """Run `coros` at once: their results (or exceptions), upstream calls, in-flight peak."""
        self.llm.reset()
        results = await asyncio.gather(*coros, return_exceptions=True)
        stats = self.llm.stats()
        return results, stats["requests_total"], stats["in_flight_peak"]

    async def run(self) -> str:
        prompt = f"{self.tag}: what does a cache hit cost?"
        first, upstream, _ = await self._calls([self.cached_reply(prompt) for _ in range(STAMPEDE)])
        reply = self._one_reply(first, f"{STAMPEDE} concurrent calls of the same prompt")
        if self.watched.sync_on_loop:
            raise Incorrect(
                "Your function called the cache's sync API on the event loop's thread. With "
                "Redis each such call is a network round trip during which no other request "
                "on this loop moves: use `await llm_cache.aget(...)` / `aset(...)`.",
                evidence="\n".join(dict.fromkeys(self.watched.sync_on_loop)),
            )
        if upstream != 1:
            raise Incorrect(
                f"{STAMPEDE} concurrent calls with the same prompt made {upstream} calls to "
                "the LLM, expected 1: each caller missed the cache before the first reply was "
                "stored (a stampede). Let the first caller ask, and the others await its task."
            )
        again, upstream, _ = await self._calls([self.cached_reply(prompt) for _ in range(STAMPEDE)])
        self._one_reply(again, f"{STAMPEDE} more calls of the same prompt")
        if upstream:
            raise Incorrect(
                f"The same prompt asked again made {upstream} more LLM calls, expected 0: "
                "the reply was not served from the cache."
            )
        if not self.watched.writes:
            raise Incorrect(
                "The replies were not stored through `llm_cache` (no `aset` was called on it): "
                "a dict in this process is not shared with the other workers. Store them "
                "with `await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)`."
            )
        if any(t is None for t in self.watched.timeouts):
            raise Incorrect(
                "A reply was stored with `timeout=None`, so it never expires: give it a TTL "
                "(`timeout=REPLY_TTL_S`) so a stale answer ages out."
            )
        other, upstream, _ = await self._calls([self.cached_reply(prompt, model=OTHER_MODEL)])
        other_reply = self._one_reply(other, f"the same prompt for {OTHER_MODEL}")
        if upstream != 1 or other_reply == reply:
            raise Incorrect(
                f"The same prompt for another model ({OTHER_MODEL}) made {upstream} LLM calls "
                "and got "
                + ("the first model's reply" if other_reply == reply else "a reply")
                + ": a different model gives a different answer, so it needs its own key "
                "(`cache_key(model, messages, **params)`)."
            )
        distinct, upstream, peak = await self._calls(
            [self.cached_reply(f"{self.tag}: question {i}") for i in range(DISTINCT)]
        )
        self._one_reply(distinct, f"{DISTINCT} different prompts", same=False)
        if upstream != DISTINCT or peak < 3:
            raise Incorrect(
                f"{DISTINCT} different prompts at once made {upstream} LLM calls with at most "
                f"{peak} in flight together, expected {DISTINCT} side by side: coalesce calls "
                "per key, not with one lock for everything."
            )
        retried = await self._after_failure()
        return (
            f"{STAMPEDE} concurrent calls of one prompt: 1 LLM call; {STAMPEDE} more: 0; "
            f"the same prompt for {OTHER_MODEL}: 1 call and its own reply; {DISTINCT} "
            f"different prompts: {DISTINCT} calls, {peak} in flight at once; {retried}"
        )

    async def _after_failure(self) -> str:
        prompt = f"{self.tag}: this one fails first"
        self.llm.configure(fault="503")
        try:
            failed, _, _ = await self._calls([self.cached_reply(prompt) for _ in range(3)])
        finally:
            self.llm.configure(fault=None)
        healed, upstream, _ = await self._calls([self.cached_reply(prompt)])
        answer = healed[0]
        if isinstance(answer, BaseException):
            raise Incorrect(
                "While the LLM answered 503 your function failed, as it should; but once the "
                f"LLM was healthy again the next call still failed, with {upstream} new LLM "
                "calls: the failed call was kept (is its entry still in your in-flight dict?).",
                evidence=f"{type(answer).__name__}: {answer}"[:300],
            )
        if upstream == 0:
            shown = failed[0] if isinstance(failed[0], str) else answer
            raise Incorrect(
                "While the LLM answered 503 your function returned "
                f"{str(shown)[:80]!r}; once the LLM was healthy again the next call made 0 LLM "
                "calls and returned the same: an error was cached as if it were the answer. "
                "Let the exception propagate and store only real replies."
            )
        errors = sum(isinstance(r, BaseException) for r in failed)
        return (
            f"while the LLM answered 503, {errors} of {len(failed)} calls raised, nothing was "
            "cached, and the next call reached the LLM again."
        )

    @staticmethod
    def _one_reply(results: list[Any], what: str, *, same: bool = True) -> str:
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            error = errors[0]
            raise Incorrect(
                f"{what}: {len(errors)} of {len(results)} raised.",
                evidence=f"{type(error).__name__}: {error}"[:300],
            )
        if not all(isinstance(r, str) and r for r in results):
            shown = next(r for r in results if not (isinstance(r, str) and r))
            raise Incorrect(
                f"{what}: expected the reply text (a non-empty str), got "
                f"{type(shown).__name__} {shown!r:.80}."
            )
        if same and len(set(results)) != 1:
            raise Incorrect(f"{what} got {len(set(results))} different replies, expected one.")
        return results[0]


q1 = CacheKey()
q2 = SingleFlightCache()
