"""The Exercise base class: what a step module declares and what a notebook calls.

A step author subclasses `Exercise` and writes `evaluate`; its parameters name the learner's
definitions, read from the notebook's namespace. `evaluate` returns (optionally a message with
the evidence of success) or raises `Incorrect` / `NotAttempted` / `CheckError`:

    class AsyncView(Exercise):
        id = "02.1"
        title = "Make the summary view async"
        hints = ["An async view is declared with `async def`.", "Await the LLM call."]
        wrong_answers = {"time.sleep in an async view": "async def summary(request): ..."}

        async def evaluate(self, summary) -> str:
            ...

    q1 = AsyncView()

In a notebook: `q1.check()`, `await q1.acheck()`, `q1.hint()`, `q1.hint(2)`, `q1.solution()`.

`check()` from a cell runs an async `evaluate` in a worker thread with its own event loop (the
kernel's loop is busy running the cell). Objects bound to the kernel's loop (an `AsyncClient`
made in a cell, a server's loop) cannot be used there: those exercises are checked with
`await q1.acheck()`, which awaits `evaluate` on the kernel's loop itself.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import textwrap
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from labkit.exercises import masters, namespace, record, richtext
from labkit.exercises.notebooks import NotebookError
from labkit.exercises.outcomes import (
    CheckError,
    CheckFailure,
    NotAttempted,
    Outcome,
    Status,
    summarize_exception,
)

ENV_HIDE_SOLUTIONS = "LAB_HIDE_SOLUTIONS"


class Exercise:
    """One checkable exercise. Subclass it, set the class attributes, write `evaluate`."""

    id: ClassVar[str] = ""  # "NN.k", stable: grades and logs are keyed by it
    title: ClassVar[str] = ""
    hints: ClassVar[list[str]] = []
    # Typical mistakes, name -> code that replaces the exercise's SOLUTION region (same indent
    # rules as the solution). `labkit verify` proves each one is reported `incorrect`.
    wrong_answers: ClassVar[dict[str, str]] = {}
    # None: the points of the exercise's cell in the master (default 1).
    points: ClassVar[int | None] = None
    # A learner's code stuck in a loop must not hang the check forever (check() only).
    timeout_s: ClassVar[float] = 120.0
    # True when `evaluate` uses objects bound to the kernel's loop: the grader then awaits it
    # on that loop (like `await q.acheck()`) instead of a worker thread's loop.
    kernel_loop: ClassVar[bool] = False
    # None: `labkit grade` judges it from outside the sandbox. A reason: feedback only — the
    # check cannot be judged without running the learner's code where the verdict is made, so
    # the grader leaves it out of the score and says why (q.check() still works in a notebook).
    feedback_only: ClassVar[str | None] = None
    # True when the check counts queries or connections (labkit.steps.dbside): the grader
    # then runs the notebook on its own PostgreSQL, whose logs are the evidence. Others run on
    # SQLite (PostgreSQL behind the sandbox's socket relay made a whole notebook ~2× slower).
    database_evidence: ClassVar[bool] = False

    def evaluate(self, *args: Any) -> str | None:
        """Judge the learner's definitions (the parameters); raise an outcome or return."""
        raise CheckError(f"Exercise {self.id} has no evaluate(); this is a bug in the lab.")

    def prepare(self) -> None:
        """Set up what `evaluate` needs (e.g. Django); runs in the same thread, before it."""

    # -- what a notebook calls -------------------------------------------------------------

    def check(self) -> None:
        """Check the answer and show the outcome with its evidence.

        q1.check()
        """
        richtext.show(self.outcome())

    async def acheck(self) -> None:
        """Check the answer on the kernel's own event loop.

        await q1.acheck()
        """
        richtext.show(await self.aoutcome())

    def hint(self, n: int = 1) -> None:
        """Show hint `n` (1 first)."""
        richtext.show(self._hint(n))

    def solution(self) -> None:
        """Show the solution code from the step's master notebook."""
        richtext.show(self._solution())

    # -- results without display (the grader, tests) ---------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The learner's definitions this exercise reads: the parameters of `evaluate`."""
        params = list(inspect.signature(self.evaluate).parameters.values())
        return tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)

    def max_points(self) -> int:
        if self.points is not None:
            return self.points
        try:
            found = masters.master_exercise(self.id)
        except (masters.MarkerError, NotebookError, OSError):
            found = None
        return found.points if found is not None else 1

    def outcome(self, namespace: Mapping[str, Any] | None = None, *, log: bool = True) -> Outcome:
        """Run the check (async `evaluate` in a worker thread if a loop is running here)."""
        started = time.perf_counter()
        try:
            values = self._gather(namespace)
            evidence = _run_blocking(self._prepare_and_evaluate, values, self.timeout_s)
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt is re-raised below
            return self._finish(exc, started, log)
        return self._finish(evidence, started, log)

    async def aoutcome(
        self, namespace: Mapping[str, Any] | None = None, *, log: bool = True
    ) -> Outcome:
        """Run the check with an async `evaluate` awaited on the current loop."""
        started = time.perf_counter()
        try:
            values = self._gather(namespace)
            await asyncio.to_thread(self.prepare)
            if inspect.iscoroutinefunction(self.evaluate):
                evidence = await self.evaluate(**values)
            else:
                evidence = await asyncio.to_thread(self.evaluate, **values)
        except BaseException as exc:  # noqa: BLE001
            return self._finish(exc, started, log)
        return self._finish(evidence, started, log)

    # -- internals -------------------------------------------------------------------------

    def _gather(self, ns: Mapping[str, Any] | None) -> dict[str, Any]:
        from labkit.exercises.remote import Remote

        values = namespace.lookup(self.names, ns)
        self._reject_starter(values)
        # A plain value (a number, a list) crosses from the sandbox as itself.
        return {
            name: value.value if isinstance(value, Remote) and value.kind == "value" else value
            for name, value in values.items()
        }

    def _reject_starter(self, values: dict[str, Any]) -> None:
        """NotAttempted if a definition is exactly the starter's (comments and spacing aside)."""
        try:
            found = masters.master_exercise(self.id)
        except (masters.MarkerError, NotebookError, OSError):
            return  # no readable master here (a learner-only install): the check decides
        if found is None:
            return
        for name, value in values.items():
            if not _same_definition(value, name, found.starter):
                continue
            if "NotImplementedError" in found.starter:
                raise NotAttempted(
                    f"`{name}` still holds the placeholder `raise NotImplementedError()`: "
                    "replace it with your code, run the cell, then check again."
                )
            raise NotAttempted(
                f"`{name}` is still the starter code: change it as the exercise asks, run "
                "the cell, then check again."
            )

    def _prepare_and_evaluate(self, values: dict[str, Any]) -> str | None:
        self.prepare()
        if inspect.iscoroutinefunction(self.evaluate):
            return asyncio.run(self.evaluate(**values))
        return self.evaluate(**values)

    def _finish(self, result: object, started: float, log: bool) -> Outcome:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # KeyboardInterrupt (the grader's timeout), SystemExit, cancellation
        status, message, evidence, detail = Status.CORRECT, "", "", ""
        if isinstance(result, CheckFailure):
            status, message, evidence = result.status, result.message, result.evidence
        elif _raised(result, "NotImplementedError"):
            status = Status.NOT_ATTEMPTED
            message = (
                f"{_listed(self.names)} still raises NotImplementedError: replace the "
                "placeholder `raise NotImplementedError()` with your code, run the cell, "
                "then check again."
            )
        elif _raised(result):
            # The learner's code raised and the check did not expect it: same words whether it
            # ran here or in the grading sandbox.
            status = Status.ERROR
            message = f"Your code raised {_raised(result)}."
        elif isinstance(result, BaseException):
            status = Status.ERROR
            message, detail = summarize_exception(result)
        elif isinstance(result, str):
            message = result
        max_points = self.max_points()
        outcome = Outcome(
            exercise=self.id,
            title=self.title,
            status=status,
            message=message,
            evidence=evidence,
            points=max_points if status is Status.CORRECT else 0,
            max_points=max_points,
            duration_s=round(time.perf_counter() - started, 3),
            detail=detail,
        )
        if log:
            record.record(outcome)
        return outcome

    def _hint(self, n: int) -> richtext.RichText:
        if not self.hints:
            return richtext.RichText(f"There are no hints for {self.id}.", "Hint")
        if not 1 <= n <= len(self.hints):
            return richtext.RichText(
                f"{self.id} has hints 1 to {len(self.hints)}; there is no hint {n}.", "Hint"
            )
        call = f"{namespace.name_of(self) or 'exercise'}.hint"
        return richtext.Hint(self.hints[n - 1], n, len(self.hints), call)

    def _solution(self) -> richtext.RichText:
        if os.environ.get(ENV_HIDE_SOLUTIONS, "").strip() not in ("", "0"):
            return richtext.RichText(
                f"Solutions are hidden in this course ({ENV_HIDE_SOLUTIONS} is set), so "
                f"{self.id} stays yours to solve. Hints: `hint()`, `hint(2)`.",
                "Solution",
            )
        where = masters.solutions_dir()
        try:
            found = masters.master_exercise(self.id)
        except (masters.MarkerError, NotebookError) as exc:
            return richtext.RichText(f"The master notebook cannot be read: {exc}", "Solution")
        if found is None:
            return richtext.RichText(
                f"No solution for {self.id} here: no master {self.id.split('.')[0]}_*.ipynb "
                f"with that exercise in {where} (set {masters.ENV_SOLUTIONS} to its folder).",
                "Solution",
            )
        return richtext.Code(found.solution, f"Solution {self.id}")

    def __repr__(self) -> str:
        return f"<Exercise {self.id}: {self.title}>"


def _raised(result: object, type_name: str | None = None) -> str | None:
    """ "Type: message" if `result` is the learner's exception (of `type_name`, if given)."""
    from labkit.steps.subject import Raised

    if isinstance(result, Raised):
        found = result.type_name
    elif isinstance(result, NotImplementedError):
        found = "NotImplementedError"  # raised straight from a learner's placeholder
    else:
        return None
    if type_name is not None and found != type_name:
        return None
    return str(result) or found


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{name}`" for name in names) or "Your code"


def _same_definition(value: object, name: str, starter: str) -> bool:
    """True if `value` (a function or class) has the same syntax tree as `name` in `starter`."""
    from labkit.exercises.remote import Remote

    if isinstance(value, Remote):
        source = value.source  # parsed here, never run: the sandbox's text is only data
    elif inspect.isfunction(value) or inspect.isclass(value):
        try:
            source = inspect.getsource(value)
        except (OSError, TypeError):
            return False
    else:
        return False
    if not source:
        return False
    try:
        tree = ast.parse(starter)
        mine = ast.parse(textwrap.dedent(source))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    theirs = [n for n in tree.body if isinstance(n, kinds) and n.name == name]
    return bool(theirs and mine.body) and ast.dump(theirs[-1]) == ast.dump(mine.body[0])


def _run_blocking(fn: Callable[[Any], Any], arg: Any, timeout_s: float) -> Any:
    """Call `fn(arg)` here, or in a worker thread if this thread runs an event loop.

    A cell's code runs inside the kernel's loop, where `asyncio.run` and Django's sync ORM
    refuse to work; a fresh thread has neither restriction. A daemon thread is used (not a
    pool) so an interrupt or a stuck learner function cannot block the kernel on shutdown.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(arg)
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn(arg)
        except BaseException as exc:  # noqa: BLE001 - carried to the caller's thread
            box["error"] = exc
        finally:
            _close_django_connections()

    thread = threading.Thread(target=work, name="labkit-check", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise CheckError(
            f"The check ran longer than {timeout_s:g} s and was abandoned: is your code "
            "stuck in a loop or waiting on something that never answers?"
        )
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _close_django_connections() -> None:
    # A thread that used the ORM leaves connections behind unless it closes them itself.
    import sys

    if "django.db" not in sys.modules:
        return
    from django.apps import apps

    if apps.ready:
        from django.db import connections

        connections.close_all()
