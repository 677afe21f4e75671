"""Step 05, caching LLM answers: a key that covers the whole request, and one call per stampede.

Master: solutions/05_caching.ipynb. In the notebook:

    from labkit.steps.step_05 import q1, q2
"""

from __future__ import annotations

import copy
import secrets
from collections.abc import Callable
from typing import Any

from labkit.exercises import Exercise, Incorrect
from labkit.steps.caching import _MISSING, LATENCY_S, OTHER_MODEL, _Trial
from labkit.steps.subject import experiment

# 05.1: the request every variant departs from.
BASE_MODEL = "gpt-4o"
BASE_MESSAGES = [
    {"role": "system", "content": "You answer in one short paragraph."},
    {"role": "user", "content": "When should I cache an LLM answer?"},
]
BASE_PARAMS = {"temperature": 0.0, "max_tokens": 200}
MAX_KEY_CHARS = 250  # memcached's limit; Django warns above it whatever the backend


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
    """05.1: a cache key that covers the whole request, and nothing else.

    A correct answer, for a request carrying a nonce chosen at check time: the same key for
    the same request written differently (parameter order, message field order, an equal
    copy); a new key for another model, temperature, max_tokens, system prompt, user prompt,
    earlier turn, or KEY_VERSION; a str of at most MAX_KEY_CHARS without spaces or control
    characters. Evidence: the keys themselves (a pure function: there is nothing else to see).
    """

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

    async def evaluate(self, cache_key) -> str:
        from labkit.steps.subject import Raised, call, run_experiment

        nonce = secrets.token_hex(4)
        base_messages = _with_nonce(BASE_MESSAGES, nonce)

        def merged(request: dict[str, Any]) -> dict[str, Any]:
            found = {"model": BASE_MODEL, "messages": base_messages, "params": BASE_PARAMS}
            found.update({k: v for k, v in request.items() if k != "before"})
            found["messages"] = _with_nonce(found["messages"], nonce)
            return found

        async def key_of(request: dict[str, Any]) -> str:
            m = merged(request)
            try:
                if "before" in request:
                    facts = await run_experiment(
                        "step_05.key_after_bump",
                        cache_key,
                        model=m["model"],
                        messages=m["messages"],
                        params=m["params"],
                    )
                    if not isinstance(facts, dict) or not facts.get("defined"):
                        raise Incorrect(
                            "`KEY_VERSION` is not defined: keep the line `KEY_VERSION = 1` of "
                            "the exercise cell and put it in the key, so that bumping it "
                            "retires every cached answer."
                        )
                    key = facts.get("key")
                else:
                    key = await call(cache_key, m["model"], m["messages"], **m["params"])
            except Raised as error:
                raise Incorrect(
                    f"`cache_key({m['model']!r}, messages, **{m['params']})` raised {error}: "
                    "it must take any JSON-able parameters and return a str."
                ) from None
            problem = _key_problem(key)
            if problem:
                raise Incorrect(problem)
            return key

        base = await key_of({})
        rows, wrong = [], []
        for what, request in _same_request_again():
            same = await key_of(request) == base
            rows.append(f"{'✓' if same else '✗'} {what}: {'same key' if same else 'NEW key'}")
            if not same:
                wrong.append(f"{what} got a different key")
        for what, request in _variants(lambda: None):
            changed = await key_of(request) != base
            rows.append(f"{'✓' if changed else '✗'} {what}: {'new key' if changed else 'SAME key'}")
            if not changed:
                wrong.append(f"{what} kept the same key")
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


def _with_nonce(messages: list[dict[str, Any]], nonce: str) -> list[dict[str, Any]]:
    """The messages with this check's nonce at the end of the last one (once)."""
    copied = copy.deepcopy(messages)
    last = copied[-1]
    if not str(last.get("content", "")).endswith(f" ({nonce})"):
        last["content"] = f"{last['content']} ({nonce})"
    return copied


@experiment("step_05.key_after_bump")
async def _key_after_bump(cache_key: Any, *, model: str, messages: list, params: dict) -> Any:
    """The learner's key for this request with KEY_VERSION bumped (then put back)."""
    namespace = cache_key.__globals__
    saved = namespace.get("KEY_VERSION", _MISSING)
    if saved is _MISSING:
        return {"defined": False}
    namespace["KEY_VERSION"] = saved + 1 if isinstance(saved, int) else f"{saved}+1"
    try:
        key = cache_key(model, copy.deepcopy(messages), **params)
    finally:
        namespace["KEY_VERSION"] = saved
    return {"defined": True, "key": key}


_FLIGHT = """
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
    task = _in_flight.get(slot)
    if task is None:
        task = asyncio.ensure_future(_ask_and_store(key, model, messages, params))
        _in_flight[slot] = task
        task.add_done_callback(lambda _: _in_flight.pop(slot, None))
    return await asyncio.shield(task)
"""
_ASK = "    reply = await ask_llm(model, messages, **params)\n"
_KEY = "    key = cache_key(model, messages, **params)\n"


def _flight_with(old: str, new: str) -> str:
    """The master's single flight (05.2) with one piece of it changed."""
    if old not in _FLIGHT:
        raise ValueError(f"not in the 05.2 master: {old!r}")
    return _FLIGHT.replace(old, new)


class SingleFlightCache(Exercise):
    """05.2: a cached reply, one upstream call per stampede, failures never kept.

    A correct answer: STAMPEDE concurrent calls of a new prompt cost 1 LLM call and get one
    reply; repeated calls cost 0; another model or another parameter (temperature) costs a
    call of its own; different prompts run side by side; a caller that leaves (cancelled)
    does not cancel the call the others share; while the LLM fails (503) every
    caller gets the exception (not "" nor an error text), nothing is stored, and the next call
    once the LLM is healthy reaches it again. Evidence: the mock LLM's request count and
    in-flight peak per phase; the replies and the cache's use are the experiment's facts.
    """

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
        "an error text cached as the reply": _flight_with(
            _ASK,
            "    try:\n"
            "        reply = await ask_llm(model, messages, **params)\n"
            "    except openai.OpenAIError:\n"
            '        reply = "Sorry, the assistant is unavailable right now."\n',
        ),
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
        "a key that drops the parameters": _flight_with(
            _KEY, "    key = cache_key(model, messages)\n"
        ),
        "a catch-all that answers an empty reply": _flight_with(
            _ASK,
            "    try:\n"
            "        reply = await ask_llm(model, messages, **params)\n"
            "    except Exception:\n"
            '        return ""\n',
        ),
        "in-flight entry removed only on success": """
_in_flight = {}


async def _ask_and_store(key, model, messages, params, slot):
    reply = await ask_llm(model, messages, **params)
    await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)
    _in_flight.pop(slot, None)
    return reply


async def cached_reply(prompt: str, *, model: str = MODEL, **params) -> str:
    messages = messages_for(prompt)
    key = cache_key(model, messages, **params)
    reply = await llm_cache.aget(key)
    if reply is not None:
        return reply
    slot = (asyncio.get_running_loop(), key)
    if slot not in _in_flight:
        _in_flight[slot] = asyncio.ensure_future(
            _ask_and_store(key, model, messages, params, slot)
        )
    return await asyncio.shield(_in_flight[slot])
""",
        "awaits the shared task without shield": _flight_with(
            "return await asyncio.shield(task)", "return await task"
        ),
        "the prompt alone as the key": _flight_with(
            _KEY, '    key = f"ai:{hashlib.sha256(prompt.encode()).hexdigest()[:16]}"\n'
        ),
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, cached_reply) -> str:
        from labkit.steps.probes import lab_mock, mock_settings
        from labkit.steps.subject import is_async, run_experiment

        if not is_async(cached_reply):
            raise Incorrect(
                "`cached_reply` is a plain `def`: declare it `async def`, so that waiting for "
                "the LLM or the cache does not hold a thread."
            )
        llm = lab_mock()
        # The function gets an empty cache of the check's own as `llm_cache`: no entry of an
        # earlier run can answer, and a Redis stopped by the notebook's last cell (the grader
        # checks after it) does not matter. Which backend it is doesn't change the logic.
        trial = _Trial(cached_reply, llm)
        try:
            with mock_settings(llm, latency_s=LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
                return await trial.run()
        finally:
            await run_experiment(
                "step_05.cached_calls", cached_reply, cache=trial.cache, calls=[], drop=True
            )


q1 = CacheKey()
q2 = SingleFlightCache()
