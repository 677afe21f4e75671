"""The 05.2 check's trial: a watched cache lent to the learner's `cached_reply`, and its phases.

`step_05.SingleFlightCache` runs a `_Trial`; each phase calls the learner's function through
the experiment "step_05.cached_calls", which runs beside the learner's code (the kernel, or
the grading sandbox) with the check's own cache as `llm_cache`. The verdict rests on the mock
LLM's counters; the replies and the cache's use are the experiment's facts.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import threading
from collections.abc import Callable
from typing import Any

from labkit.exercises import Incorrect
from labkit.steps.subject import experiment

# How many identical prompts arrive at once, and how slow the LLM answers meanwhile.
STAMPEDE = 20
DISTINCT = 5
LATENCY_S = 0.3
OTHER_MODEL = "gpt-4o-mini"
OTHER_TEMPERATURE = 0.9  # a parameter the base calls leave at the default
FAILING = 3  # concurrent calls while the LLM answers 503
STAYING = 4  # callers who stay while another caller of the same prompt leaves
_MISSING = object()


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
        self.stored: list[str] = []  # what was written, shortened, sync or async

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
            if name in ("set", "add") and len(args) > 1:
                self.stored.append(repr(args[1])[:80])
            return method(*args, **kwargs)

        return call

    def _async(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            self.async_calls += 1
            if name in self.WRITES:
                self.writes += 1
                if name in ("aset", "aadd"):
                    self.timeouts.append(args[2] if len(args) > 2 else kwargs.get("timeout", ...))
                    if len(args) > 1:
                        self.stored.append(repr(args[1])[:80])
            return await method(*args, **kwargs)

        return call


# Caches the check lends `cached_reply` as `llm_cache`, by check run: they live where the
# learner's code runs (the kernel, or the grading sandbox), across the check's phases.
_CHECK_CACHES: dict[str, _WatchedCache] = {}
_LEFT = object()  # the result of a caller that left before its answer came


@experiment("step_05.cached_calls")
async def _cached_calls(
    cached_reply: Any, *, cache: str, calls: list[dict[str, Any]], drop: bool = False
) -> dict[str, Any]:
    """Run `calls` of `cached_reply` at once with the check's cache `cache` as `llm_cache`.

    Facts: each call's reply or exception, and how the cache was used meanwhile.
    """
    if drop:
        _CHECK_CACHES.pop(cache, None)
        return {}
    from django.core.cache.backends.locmem import LocMemCache

    watched = _CHECK_CACHES.setdefault(cache, _WatchedCache(LocMemCache(cache, {})))
    namespace = cached_reply.__globals__
    saved = namespace.get("llm_cache", _MISSING)
    marks = (len(watched.sync_on_loop), watched.writes, len(watched.timeouts), len(watched.stored))
    namespace["llm_cache"] = watched

    async def one(spec: dict[str, Any]) -> Any:
        task = asyncio.ensure_future(cached_reply(spec["prompt"], **spec.get("kwargs", {})))
        if spec.get("leave_after_s") is None:
            return await task
        # This caller goes away (its client hung up): its task is cancelled mid-call.
        await asyncio.sleep(float(spec["leave_after_s"]))
        task.cancel()
        try:
            return await task
        except asyncio.CancelledError:
            return _LEFT

    try:
        results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    finally:
        if saved is _MISSING:
            namespace.pop("llm_cache", None)
        else:
            namespace["llm_cache"] = saved
    return {
        "results": [
            {"left": True}
            if r is _LEFT
            else {"raised": type(r).__name__, "message": str(r)[:300]}
            if isinstance(r, BaseException)
            else {"value": r if isinstance(r, str | int | float | None) else repr(r)[:200]}
            for r in results
        ],
        "sync_on_loop": watched.sync_on_loop[marks[0] :],
        "writes": watched.writes - marks[1],
        "timeouts": [
            "default" if t is ... else t if t is None or isinstance(t, int | float) else repr(t)
            for t in watched.timeouts[marks[2] :]
        ],
        "stored": watched.stored[marks[3] :],
    }


class _Trial:
    """The phases of the 05.2 check, each counting the calls that reached the LLM."""

    def __init__(self, cached_reply: Any, llm: Any) -> None:
        self.cached_reply = cached_reply
        self.llm = llm
        self.tag = f"check 05.2 {secrets.token_hex(4)}"
        self.cache = f"check-05.2-{secrets.token_hex(4)}"
        self.sync_on_loop: list[str] = []

    async def _calls(
        self, prompts: list[str], **kwargs: Any
    ) -> tuple[list[Any], int, int, dict[str, Any]]:
        """Call with `prompts` at once: results (str or Raised), upstream calls, peak, facts."""
        from labkit.steps.subject import Raised, run_experiment

        self.llm.reset()
        calls = [{"prompt": p, "kwargs": kwargs} for p in prompts]
        try:
            facts = await run_experiment(
                "step_05.cached_calls", self.cached_reply, cache=self.cache, calls=calls
            )
        except Raised as error:
            raise Incorrect(f"Calling `cached_reply` failed: {error}") from None
        stats = self.llm.stats()
        results = [
            Raised(str(r.get("raised")), str(r.get("message", "")))
            if isinstance(r, dict) and "raised" in r
            else (r.get("value") if isinstance(r, dict) else None)
            for r in facts.get("results", [])
        ]
        self.sync_on_loop += [str(line) for line in facts.get("sync_on_loop", [])]
        return results, stats["requests_total"], stats["in_flight_peak"], facts

    async def run(self) -> str:
        prompt = f"{self.tag}: what does a cache hit cost?"
        first, upstream, _, facts = await self._calls([prompt] * STAMPEDE)
        reply = self._one_reply(first, f"{STAMPEDE} concurrent calls of the same prompt")
        if self.sync_on_loop:
            raise Incorrect(
                "Your function called the cache's sync API on the event loop's thread. With "
                "Redis each such call is a network round trip during which no other request "
                "on this loop moves: use `await llm_cache.aget(...)` / `aset(...)`.",
                evidence="\n".join(dict.fromkeys(self.sync_on_loop)),
            )
        if upstream != 1:
            raise Incorrect(
                f"{STAMPEDE} concurrent calls with the same prompt made {upstream} calls to "
                "the LLM, expected 1: each caller missed the cache before the first reply was "
                "stored (a stampede). Let the first caller ask, and the others await its task."
            )
        again, upstream, _, _ = await self._calls([prompt] * STAMPEDE)
        self._one_reply(again, f"{STAMPEDE} more calls of the same prompt")
        if upstream:
            raise Incorrect(
                f"The same prompt asked again made {upstream} more LLM calls, expected 0: "
                "the reply was not served from the cache."
            )
        if not facts.get("writes"):
            raise Incorrect(
                "The replies were not stored through `llm_cache` (no `aset` was called on it): "
                "a dict in this process is not shared with the other workers. Store them "
                "with `await llm_cache.aset(key, reply, timeout=REPLY_TTL_S)`."
            )
        if any(t is None for t in facts.get("timeouts", [])):
            raise Incorrect(
                "A reply was stored with `timeout=None`, so it never expires: give it a TTL "
                "(`timeout=REPLY_TTL_S`) so a stale answer ages out."
            )
        other, upstream, _, _ = await self._calls([prompt], model=OTHER_MODEL)
        other_reply = self._one_reply(other, f"the same prompt for {OTHER_MODEL}")
        if upstream != 1 or other_reply == reply:
            raise Incorrect(
                f"The same prompt for another model ({OTHER_MODEL}) made {upstream} LLM calls "
                "and got "
                + ("the first model's reply" if other_reply == reply else "a reply")
                + ": a different model gives a different answer, so it needs its own key "
                "(`cache_key(model, messages, **params)`)."
            )
        await self._same_prompt_other_params(prompt)
        distinct, upstream, peak, _ = await self._calls(
            [f"{self.tag}: question {i}" for i in range(DISTINCT)]
        )
        self._one_reply(distinct, f"{DISTINCT} different prompts", same=False)
        if upstream != DISTINCT or peak < 3:
            raise Incorrect(
                f"{DISTINCT} different prompts at once made {upstream} LLM calls with at most "
                f"{peak} in flight together, expected {DISTINCT} side by side: coalesce calls "
                "per key, not with one lock for everything."
            )
        left = await self._caller_leaves()
        retried = await self._after_failure()
        return (
            f"{STAMPEDE} concurrent calls of one prompt: 1 LLM call; {STAMPEDE} more: 0; "
            f"the same prompt for {OTHER_MODEL}: 1 call and its own reply; with "
            f"temperature={OTHER_TEMPERATURE}: 1 call; {DISTINCT} different prompts: "
            f"{DISTINCT} calls, {peak} in flight at once; {left} And {retried}"
        )

    async def _same_prompt_other_params(self, prompt: str) -> None:
        what = f"the same prompt with `temperature={OTHER_TEMPERATURE}`"
        other, upstream, _, _ = await self._calls([prompt], temperature=OTHER_TEMPERATURE)
        self._one_reply(other, what)
        if upstream != 1:
            raise Incorrect(
                f"After the calls at the default temperature, {what} made {upstream} LLM "
                "calls, expected 1: "
                + (
                    "it was served the reply cached for the default temperature, so the key "
                    "leaves the parameters out. Parameters change the answer: build the key "
                    "with `cache_key(model, messages, **params)`."
                    if upstream == 0
                    else "one call for one new request."
                )
            )

    async def _caller_leaves(self) -> str:
        """STAYING + 1 callers of a new prompt; the first leaves a third into the LLM call."""
        from labkit.steps.subject import run_experiment

        prompt = f"{self.tag}: one caller leaves"
        leave_s = LATENCY_S / 3
        calls = [{"prompt": prompt, "leave_after_s": leave_s}]
        calls += [{"prompt": prompt}] * STAYING
        self.llm.reset()
        facts = await run_experiment(
            "step_05.cached_calls", self.cached_reply, cache=self.cache, calls=calls
        )
        stats = self.llm.stats()
        results = facts.get("results", [])[1:]
        raised = [r for r in results if not isinstance(r, dict) or "value" not in r]
        if raised or stats["cancelled_total"]:
            shown = raised[0] if raised else {}
            error = str(shown.get("raised", "no reply")) if isinstance(shown, dict) else "?"
            raise Incorrect(
                f"{STAYING + 1} concurrent calls of a new prompt; the first caller left "
                f"{leave_s:.1f} s in (cancelled, as when its client hangs up). The mock counted "
                f"{stats['cancelled_total']} cancelled LLM call(s), and {len(raised)} of the "
                f"{STAYING} callers who stayed got no reply ({error}), expected 0 and 0: the "
                "call they all shared was cancelled with the caller who left. Await the task "
                "through `asyncio.shield(task)`: a caller that leaves stops waiting, the call "
                "goes on for the others."
            )
        calls_made = stats["requests_total"]
        if calls_made != 1:
            raise Incorrect(
                f"{STAYING + 1} concurrent calls of a new prompt, the first of which left, "
                f"made {calls_made} LLM calls, expected 1."
            )
        return (
            f"{STAYING + 1} concurrent calls of a new prompt whose first caller left: 1 LLM "
            f"call, not cancelled, and all {STAYING} others got the reply."
        )

    async def _after_failure(self) -> str:
        from labkit.steps.subject import Raised

        prompt = f"{self.tag}: this one fails first"
        self.llm.configure(fault="503")
        try:
            failed, _, _, facts = await self._calls([prompt] * FAILING)
        finally:
            self.llm.configure(fault=None)
        stored = [str(v) for v in facts.get("stored", [])]
        answered = [r for r in failed if not isinstance(r, Raised)]
        healed, upstream, _, _ = await self._calls([prompt])
        answer = healed[0]
        if stored:
            raise Incorrect(
                f"While the LLM answered 503, your function wrote {len(stored)} value(s) into "
                f"`llm_cache` ({stored[0]}): a failure was cached as if it were the answer, "
                f"and once the LLM was healthy the next call made {upstream} LLM calls. Store "
                "only real replies: let the exception propagate before `aset`.",
                evidence="stored: " + "; ".join(stored[:3]),
            )
        if answered:
            raise Incorrect(
                f"While the LLM answered 503, {len(answered)} of {len(failed)} calls returned "
                f"{str(answered[0])[:80]!r} instead of raising: the caller cannot tell an "
                "outage from an answer (a view would send 200 with that text). Let the "
                "LLM's exception propagate; do not catch it in `cached_reply`.",
            )
        if isinstance(answer, Raised):
            if upstream == 0:
                raise Incorrect(
                    "While the LLM answered 503 your calls raised, as they should; but once "
                    "the LLM was healthy again the next call raised too, with 0 new LLM calls "
                    "and nothing in the cache: the failed task was still found in your "
                    "in-flight dict. Remove its entry when the task ends, failed or not "
                    "(`task.add_done_callback(...)`, or `finally:`).",
                    evidence=str(answer)[:300],
                )
            raise Incorrect(
                f"Once the LLM was healthy again, the next call made {upstream} LLM call(s) "
                "and still raised:",
                evidence=str(answer)[:300],
            )
        if upstream == 0:
            raise Incorrect(
                "Once the LLM was healthy again, the next call made 0 LLM calls and returned "
                f"{str(answer)[:80]!r}: something of the failed call was kept and served."
            )
        return (
            f"while the LLM answered 503, all {len(failed)} calls raised, nothing was "
            "cached, and the next call reached the LLM again."
        )

    @staticmethod
    def _one_reply(results: list[Any], what: str, *, same: bool = True) -> str:
        from labkit.steps.subject import Raised

        errors = [r for r in results if isinstance(r, Raised)]
        if errors:
            raise Incorrect(
                f"{what}: {len(errors)} of {len(results)} raised.",
                evidence=str(errors[0])[:300],
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
