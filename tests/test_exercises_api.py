"""The exercise API in-process: four outcomes with evidence, not-attempted detection, threads."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import types

import pytest

import labkit.exercises
from labkit.exercises import (
    MIME_TYPE,
    CheckError,
    Exercise,
    Incorrect,
    NotAttempted,
    Status,
    exercises,
    expect_queries,
    find,
)
from labkit.exercises.record import read_log
from labkit.exercises.registry import RegistryError
from tests.fixtures.labenv import use_fixture_steps


@pytest.fixture(autouse=True)
def lab_env(monkeypatch, tmp_path):
    use_fixture_steps(monkeypatch)
    monkeypatch.setenv("LAB_CHECK_LOG", str(tmp_path / "checks.jsonl"))


class FakeLog:
    """Stands in for labkit.queries.QueryLog: a count and the numbered SQL."""

    def __init__(self, sql: list[str]) -> None:
        self.sql = sql
        self.n_queries = len(sql)

    def numbered(self, limit: int = 20) -> str:
        return "\n".join(f"{i}. {q}" for i, q in enumerate(self.sql, start=1))


class FewQueries(Exercise):
    id = "98.1"
    title = "Few queries"
    hints = ["Use prefetch_related.", "Or values_list."]

    def evaluate(self, run_queries) -> str:
        return expect_queries(FakeLog(run_queries()), at_most=2)


def test_the_four_outcomes_carry_their_evidence():
    ex = FewQueries()
    not_attempted = ex.outcome({})
    assert not_attempted.status is Status.NOT_ATTEMPTED
    assert "`run_queries` is not defined yet" in not_attempted.message

    twelve = [f'SELECT * FROM "chunk" WHERE id = {i}' for i in range(12)]
    incorrect = ex.outcome({"run_queries": lambda: twelve})
    assert incorrect.status is Status.INCORRECT and incorrect.points == 0
    assert incorrect.message == "12 queries, expected at most 2:"
    assert incorrect.evidence.splitlines()[0] == '1. SELECT * FROM "chunk" WHERE id = 0'
    assert "12. SELECT" in str(incorrect)

    correct = ex.outcome({"run_queries": lambda: ["SELECT 1", "SELECT 2"]})
    assert correct.status is Status.CORRECT and correct.points == correct.max_points == 1
    assert correct.message == "2 queries (at most 2 allowed)."

    def run_queries():
        return 1 / 0

    error = ex.outcome({"run_queries": run_queries})
    assert error.status is Status.ERROR
    assert error.message.startswith("Your code raised ZeroDivisionError: division by zero")
    assert "in `run_queries`" in error.message and "Traceback" not in error.message
    assert "Traceback" in error.detail  # kept for staff, in the log only


def test_a_bug_in_the_check_is_an_error_that_blames_the_lab():
    class Buggy(Exercise):
        id = "98.2"

        def evaluate(self, thing) -> str:
            return expect_queries(None, at_most=2)  # type: ignore[arg-type]

    outcome = Buggy().outcome({"thing": 1})
    assert outcome.status is Status.ERROR
    assert "AttributeError" in outcome.message and "bug in the lab" in outcome.message
    assert "labkit/exercises/evidence.py" in outcome.message


def test_check_error_and_partial_definitions():
    class NeedsBoot(Exercise):
        id = "98.3"

        def evaluate(self, a, b) -> None:
            raise CheckError("Run the `boot()` cell first.")

    ex = NeedsBoot()
    partial = ex.outcome({"a": 1})
    assert partial.status is Status.INCORRECT and "`b`" in partial.message
    assert ex.outcome({"a": 1, "b": 2}).message == "Run the `boot()` cell first."


def test_placeholder_starter_and_sync_view_are_not_attempted():
    q1, q2 = exercises("90")

    def double(x):
        raise NotImplementedError()

    placeholder = q1.outcome({"double": double})
    assert placeholder.status is Status.NOT_ATTEMPTED
    assert "NotImplementedError" in placeholder.message

    def hello(request):
        reply = fake_llm_sync("hi")  # noqa: F821 - the master's starter, verbatim
        return JsonResponse({"reply": reply})  # noqa: F821

    starter = q2.outcome({"hello": hello})
    assert starter.status is Status.NOT_ATTEMPTED
    assert "`hello` is still the starter code" in starter.message

    def hello(request):  # noqa: F811 - edited, but still a plain def view
        return None

    still_def = q2.outcome({"hello": hello})
    assert still_def.status is Status.NOT_ATTEMPTED and "plain `def` view" in still_def.message


async def fake_llm(prompt: str) -> str:
    await asyncio.sleep(0.05)
    return prompt.upper()


def test_check_runs_an_async_check_in_a_worker_thread_when_a_loop_is_running(capsys):
    from django.http import JsonResponse

    async def hello(request):
        return JsonResponse({"reply": await fake_llm("hi")})

    q2 = find("90.2")
    ns = {"hello": hello}

    async def cell():
        # What a notebook cell is: code running inside a running event loop.
        assert asyncio.get_running_loop().is_running()
        return q2.outcome(ns), threading.current_thread().name

    outcome, thread = asyncio.run(cell())
    assert outcome.status is Status.CORRECT, outcome.text
    assert "10 concurrent requests took" in outcome.message
    assert "They ran side by side" in outcome.message
    assert thread == "MainThread"


def test_a_blocking_async_view_is_incorrect_with_the_overlap_measured():
    from django.http import JsonResponse

    async def hello(request):
        time.sleep(0.03)
        return JsonResponse({"reply": "HI"})

    outcome = find("90.2").outcome({"hello": hello})
    assert outcome.status is Status.INCORRECT
    assert outcome.message.startswith("10 concurrent requests took")
    assert "something in your view blocks the event loop" in outcome.message


def test_acheck_awaits_on_the_callers_loop_and_check_uses_another():
    seen: dict[str, object] = {}

    class LoopBound(Exercise):
        id = "98.4"

        async def evaluate(self, thing) -> None:
            seen["loop"] = asyncio.get_running_loop()
            seen["thread"] = threading.current_thread().name

    ex = LoopBound()

    async def cell():
        loop = asyncio.get_running_loop()
        await ex.aoutcome({"thing": 1})
        same = seen["loop"] is loop
        ex.outcome({"thing": 1})
        return same, seen["loop"] is loop, seen["thread"]

    awaited_same, checked_same, thread = asyncio.run(cell())
    assert awaited_same and not checked_same and thread == "labkit-check"


def test_a_stuck_check_is_abandoned_after_its_timeout():
    class Slow(Exercise):
        id = "98.5"
        timeout_s = 0.2

        def evaluate(self, wait) -> None:
            wait()

    async def cell():
        return Slow().outcome({"wait": lambda: time.sleep(0.6)})

    outcome = asyncio.run(cell())
    assert outcome.status is Status.ERROR and "longer than 0.2 s" in outcome.message


def test_keyboard_interrupt_is_not_swallowed():
    class Interrupted(Exercise):
        id = "98.6"

        def evaluate(self, x) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Interrupted().outcome({"x": 1})


def test_every_check_is_logged_and_carries_the_grader_mime(tmp_path):
    ex = FewQueries()
    ex.outcome({})
    ex.outcome({"run_queries": lambda: ["SELECT 1"]})
    ex.outcome({"run_queries": lambda: ["SELECT 1"]}, log=False)
    events = read_log(tmp_path / "checks.jsonl")
    assert [e["status"] for e in events] == ["not_attempted", "correct"]
    assert {e["event"] for e in events} == {"check"} and all(e["time"] for e in events)

    bundle = ex.outcome({"run_queries": lambda: ["SELECT 1"]})._repr_mimebundle_()
    assert bundle[MIME_TYPE]["status"] == "correct" and bundle[MIME_TYPE]["exercise"] == "98.1"
    assert bundle["text/markdown"].startswith("**Correct** · 98.1 Few queries")
    json.dumps(bundle[MIME_TYPE])  # JSON-serialisable, as nbformat requires


def test_hints_and_solutions(capsys, monkeypatch):
    q2 = find("90.2")
    q2.hint()
    q2.hint(2)
    q2.hint(3)
    out = capsys.readouterr().out
    assert "Hint 1 of 2: Declare the view with `async def`." in out
    assert "hint(2)" in out
    assert "Hint 2 of 2: Call `await fake_llm(...)`" in out
    assert "there is no hint 3" in out

    q2.solution()
    shown = capsys.readouterr().out
    assert 'reply = await fake_llm("hi")' in shown and "### BEGIN" not in shown

    monkeypatch.setenv("LAB_HIDE_SOLUTIONS", "1")
    q2.solution()
    hidden = capsys.readouterr().out
    assert "Solutions are hidden in this course (LAB_HIDE_SOLUTIONS is set)" in hidden
    assert "await fake_llm" not in hidden


def test_solution_without_a_master_says_where_it_looked(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_SOLUTIONS_DIR", str(tmp_path))
    find("90.1").solution()
    assert "No solution for 90.1 here: no master 90_*.ipynb" in capsys.readouterr().out


def test_points_come_from_the_master():
    q1, q2 = exercises("90")
    assert (q1.max_points(), q2.max_points()) == (1, 2)


def test_registry_finds_by_step_and_id_and_rejects_duplicates(monkeypatch):
    q = exercises("90")
    assert q.ids == ["90.1", "90.2"] and q["90.2"] is find("90.2")
    with pytest.raises(RegistryError, match="no exercise '90.7'"):
        find("90.7")

    clone = types.ModuleType("labkit_test_clone_steps")
    clone.q1 = type("Other", (Exercise,), {"id": "90.1"})()
    monkeypatch.setitem(sys.modules, clone.__name__, clone)
    monkeypatch.setenv("LABKIT_EXTRA_STEPS", f"tests.fixtures.steps.step_90,{clone.__name__}")
    with pytest.raises(RegistryError, match="two exercises claim id 90.1"):
        exercises("90")


def test_public_surface_is_pinned():
    assert len(set(labkit.exercises.__all__)) == len(labkit.exercises.__all__)
    assert set(labkit.exercises.__all__) == {
        "MIME_TYPE",
        "CheckError",
        "Exercise",
        "ExerciseSet",
        "Incorrect",
        "NotAttempted",
        "Outcome",
        "Overlap",
        "Status",
        "exercises",
        "expect_overlap",
        "expect_queries",
        "find",
        "overlap",
    }
    assert NotAttempted.status is Status.NOT_ATTEMPTED and Incorrect.status is Status.INCORRECT
