"""How a check reaches the learner's definitions: the same calls in the kernel and the grader.

`q.check()` in a notebook evaluates against the kernel's own objects; `labkit grade` evaluates
in a checker process that holds only `Remote` names of a sandbox (labkit.exercises.remote). A
check written with these functions gets the same answers in both places, so the learner's
instant feedback and the grade agree:

    if not is_async(load_context): raise Incorrect(...)
    text = await call(load_context, doc_id)          # JSON in, JSON out; Raised if it raised
    facts = await experiment("step_03.client_per_loop", get_client, calls=20)
    async with ServedView(chat, route="chat") as served: ...   (labkit.steps.probes)

What comes back from the learner's side is a claim: in the grader it was produced by code the
learner controls. Base a verdict on evidence the learner's code cannot forge — answers to
inputs chosen at check time (nonces, fresh rows), the mock LLM's counters (`lab_mock()`), the
database as the checker sees it (`labkit.steps.dbside`) — and use claims for messages.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from labkit.exercises.remote import Channel, Remote

Experiment = Callable[..., Awaitable[Any]]
_EXPERIMENTS: dict[str, Experiment] = {}


class Raised(Exception):
    """The learner's code raised: its exception's type name and message (any process)."""

    def __init__(self, type_name: str, message: str, where: str = "") -> None:
        text = f"{type_name}: {message}" if message else type_name
        super().__init__(f"{text} ({where})" if where else text)
        self.type_name = type_name
        self.message = message
        self.where = where


@dataclass
class Checker:
    """What the grader's checker process holds: the channel and its own mock LLM."""

    channel: Channel
    mock: Any  # a MockLLM owned by the grader (admin token and reply salt unknown to learners)
    database: Any = None  # a Witness of the grader's PostgreSQL, when grading has one
    kernel_loop: bool = False  # the exercise being judged awaits on the kernel's loop


_checker: Checker | None = None


def use_checker(checker: Checker | None) -> None:
    """Make this process the grader's checker (None: back to the kernel's own objects)."""
    global _checker
    _checker = checker


def checker() -> Checker | None:
    """The checker this process serves as, or None in a learner's kernel."""
    return _checker


def grading() -> bool:
    return _checker is not None


def is_async(fn: Any) -> bool:
    """True for an `async def` function, here or in the sandbox."""
    if isinstance(fn, Remote):
        return fn.is_async
    return inspect.iscoroutinefunction(fn)


def kind_of(fn: Any) -> str:
    """ "async function", "function", "class", "async generator function" or "value"."""
    if isinstance(fn, Remote):
        return fn.kind
    from labkit.grading.servant import describe

    return str(describe(fn)["kind"])


def source_of(fn: Any) -> str | None:
    """The definition's source as the learner wrote it, if it can be found."""
    if isinstance(fn, Remote):
        return fn.source
    from labkit.grading.servant import describe

    return describe(fn)["source"]


async def call(fn: Any, *args: Any, timeout_s: float = 120.0, **kwargs: Any) -> Any:
    """Call a learner's function with JSON arguments; return its result as JSON data.

    A coroutine function is awaited (on this loop in the kernel, on the kernel's loop in the
    sandbox), a plain one runs in a thread. What JSON cannot hold comes back as
    `{"__type__": "Name", "repr": "..."}`. Raises `Raised` if the learner's code raised.
    """
    from labkit.grading.servant import error_of, invoke, jsonable

    if isinstance(fn, Remote):
        request = {"name": fn.name, "args": list(args), "kwargs": kwargs}
        answer = await fn.channel.apost("call", request | _where(), timeout_s)
        return _unwrap(answer)
    try:
        value = await invoke(fn, list(args), kwargs)
    except Exception as exc:  # noqa: BLE001 - the learner's exception, as the grader sees it
        error = error_of(exc)
        raise Raised(error["type"], error["message"], error["where"]) from exc
    return jsonable(value)


def experiment(name: str) -> Callable[[Experiment], Experiment]:
    """Register `async def fn(target, **params)` to run beside the learner's code.

    An experiment drives a learner definition that cannot cross a process boundary (a client
    factory, a cache object) and returns JSON facts. Register it at the top level of a step
    module (`@experiment("step_03.client_per_loop")`): the sandbox imports the module to find
    it. Its facts are claims when grading; judge what the mock or the database confirms.
    """

    def register(fn: Experiment) -> Experiment:
        _EXPERIMENTS[name] = fn
        return fn

    return register


def find_experiment(name: str) -> Experiment:
    if name not in _EXPERIMENTS:
        import importlib

        importlib.import_module(f"labkit.steps.{name.split('.', 1)[0]}")
    return _EXPERIMENTS[name]


async def run_experiment(name: str, target: Any, *, timeout_s: float = 120.0, **params: Any) -> Any:
    """Run experiment `name` on `target` where the target lives; return its JSON facts."""
    from labkit.grading.servant import error_of, jsonable

    if isinstance(target, Remote):
        request = {"name": name, "target": target.name, "params": params}
        answer = await target.channel.apost("experiment", request | _where(), timeout_s)
        return _unwrap(answer)
    try:
        value = await find_experiment(name)(target, **params)
    except Exception as exc:  # noqa: BLE001
        error = error_of(exc)
        raise Raised(error["type"], error["message"], error["where"]) from exc
    return jsonable(value)


def _where() -> dict[str, bool]:
    return {"kernel_loop": bool(_checker is not None and _checker.kernel_loop)}


def _unwrap(answer: Any) -> Any:
    if not isinstance(answer, dict) or "ok" not in answer:
        from labkit.exercises.remote import ChannelError

        raise ChannelError("the sandbox answered outside the protocol")
    if answer["ok"]:
        return answer.get("value")
    error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
    raise Raised(
        str(error.get("type", "Exception")),
        str(error.get("message", "")),
        str(error.get("where", ""))[:200],
    )
