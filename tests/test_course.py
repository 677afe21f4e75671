"""The course as shipped: learner copies match the masters, every check is proven, and the
grader gives the masters full marks and untouched learner copies zero (not attempted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


# The three course runs (verify, grade the masters, grade the learner copies) execute every
# notebook in sandboxes; they mostly wait on the mock's latency, so they start with the test
# session (tests/course_runs.py, from conftest) and run beside the rest of the suite.
COURSE_TIMEOUT_S = 2400


def _labkit(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "labkit", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "LAB_STATE_DIR"},
    )  # fmt: skip


@pytest.fixture(scope="module")
def course_runs() -> dict[str, tuple[int, str, Path]]:
    """The three runs' results, name -> (exit code, output, JSON report)."""
    from tests.course_runs import RUNS

    return RUNS.results(COURSE_TIMEOUT_S)


def test_there_is_a_course():
    assert MASTERS, "solutions/ holds no masters"
    learner = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert learner == [p.name for p in MASTERS]


def test_learner_notebooks_are_built_from_the_masters():
    result = _labkit("notebooks", "build", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_committed_notebooks_carry_no_outputs():
    for path in [*MASTERS, *(ROOT / "notebooks").glob("*.ipynb")]:
        nb = json.loads(path.read_text())
        dirty = [
            i for i, c in enumerate(nb["cells"]) if c.get("outputs") or c.get("execution_count")
        ]
        assert not dirty, f"{path.name}: cells {dirty} carry outputs"


@pytest.mark.timeout(COURSE_TIMEOUT_S + 60)
def test_verify_proves_every_check(course_runs):
    code, output, _ = course_runs["verify"]
    assert code == 0, output[-6000:]


@pytest.fixture(scope="module")
def grades(course_runs):
    code, output, report = course_runs["notebooks"]
    assert code == 0, output[-6000:]
    return json.loads(report.read_text())["notebooks"]


@pytest.mark.timeout(COURSE_TIMEOUT_S + 60)
def test_masters_get_full_marks(course_runs):
    """verify grades each master's answer to every exercise through the sandboxed grader."""
    from labkit.exercises.registry import exercises

    code, output, _ = course_runs["verify"]
    solutions = {
        line.split()[0]: line.split()[-3:]
        for line in output.splitlines()
        if line.split()[1:2] == ["solution"] and "(kernel" not in line
    }
    for master in MASTERS:
        for exercise in exercises(master.name[:2]):
            if exercise.feedback_only is not None:
                continue
            assert solutions.get(exercise.id) == ["correct", "correct", "ok"], (
                exercise.id,
                output[-3000:],
            )


@pytest.mark.timeout(COURSE_TIMEOUT_S + 60)
def test_learner_copies_grade_not_attempted(grades):
    assert len(grades) == len(MASTERS)
    for notebook in grades:
        statuses = {e["status"] for e in notebook["exercises"]}
        assert statuses == {"not_attempted"}, f"{notebook['path']}: {notebook['exercises']}"
        assert notebook["score"] == 0


def test_every_graded_step_has_two_exercises_with_two_wrong_answers():
    from labkit.exercises.registry import exercises

    for master in MASTERS:
        step = master.name[:2]
        found = exercises(step)
        if step == "00":
            assert found, "00 needs its warm-up exercise"
            continue
        assert len(found) >= 2, f"step {step} has {len(found)} exercises"
        for exercise in found:
            assert len(exercise.wrong_answers) >= 2, f"{exercise.id} has too few wrong answers"
