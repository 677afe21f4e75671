"""Grade submitted notebooks: run each in a fresh kernel, then check every exercise of its step.

Each notebook runs on a copy in a temporary directory (the kernel's cwd) with a state dir of
its own (`LAB_STATE_DIR`), so runs share no database and cannot touch the submission folder.
Cells run with a timeout and are interrupted when it passes; errors do not stop the run. Then
one probe cell per exercise of the notebook's step (`labkit.grading.probe`) checks the final
state; only those explicit results score. Warnings and stderr never cost points.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TIMEOUT_ENAME = "CellTimeout"


class GraderFailure(RuntimeError):
    """The grader itself could not work (no kernel, no notebooks): not a submission's fault."""


class NothingToGrade(GraderFailure):
    """The paths hold no notebooks (or do not exist)."""


@dataclass
class ExerciseGrade:
    id: str
    title: str
    status: str  # correct, incorrect, not_attempted, error, timeout
    points: int
    max_points: int
    message: str


@dataclass
class NotebookGrade:
    path: str
    step: str | None
    exercises: list[ExerciseGrade] = field(default_factory=list)
    error: str | None = None  # the notebook could not be graded at all, and why
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def score(self) -> int:
        return sum(exercise.points for exercise in self.exercises)

    @property
    def max_score(self) -> int:
        return sum(exercise.max_points for exercise in self.exercises)


def collect(paths: Iterable[Path]) -> list[Path]:
    """Notebook files among `paths` (folders searched recursively, checkpoints skipped)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                p
                for p in sorted(path.rglob("*.ipynb"))
                if ".ipynb_checkpoints" not in p.parts and not p.name.endswith(".solved.ipynb")
            )
        elif path.is_file():
            found.append(path)
        else:
            raise NothingToGrade(f"{path}: no such file or folder")
    return found


def grade(paths: list[Path], *, cell_timeout: int = 300, jobs: int = 1) -> list[NotebookGrade]:
    """Grade every notebook under `paths`; at most `jobs` kernels run at once."""
    notebooks = collect(paths)
    if not notebooks:
        raise NothingToGrade(f"no notebooks found in {', '.join(map(str, paths))}")

    async def all_of_them() -> list[NotebookGrade]:
        gate = asyncio.Semaphore(max(1, jobs))

        async def one(path: Path) -> NotebookGrade:
            async with gate:
                return await grade_notebook(path, cell_timeout=cell_timeout)

        return list(await asyncio.gather(*(one(path) for path in notebooks)))

    return asyncio.run(all_of_them())


async def grade_notebook(path: Path, *, cell_timeout: int = 300) -> NotebookGrade:
    """Run one notebook on a copy and return its grade; a broken notebook is graded, not raised."""
    from labkit.exercises.notebooks import NotebookError, load_notebook, step_of
    from labkit.exercises.registry import RegistryError
    from labkit.exercises.registry import exercises as step_exercises

    started = time.perf_counter()
    nb = None
    try:
        nb = load_notebook(path)
    except (NotebookError, OSError) as exc:
        grade = NotebookGrade(str(path), step_of(None, path), error=str(exc))
    else:
        grade = NotebookGrade(str(path), step_of(nb, path))
    if grade.step is None:
        grade.error = grade.error or (
            f"{path}: cannot tell which step this notebook belongs to: name it NN_topic.ipynb "
            'or set {"labkit": {"step": "NN"}} in its metadata'
        )
        return grade
    try:
        expected = {ex.id: ex for ex in step_exercises(grade.step)}
    except RegistryError as exc:
        grade.error = f"{path}: {exc}"
        return grade
    if not expected:
        grade.notes.append(f"step {grade.step} has no exercises to check")
        return grade
    if nb is None or grade.error:
        grade.exercises = [
            _grade(ex, "error", f"Not graded: {grade.error}") for ex in expected.values()
        ]
        return grade
    outcomes = await _execute(path, nb, list(expected), cell_timeout, grade.notes)
    grade.exercises = [
        _grade(ex, *outcomes.get(ex.id, ("error", "The check did not run.")))
        for ex in expected.values()
    ]
    grade.duration_s = round(time.perf_counter() - started, 2)
    return grade


def _grade(exercise: Any, status: str, message: str) -> ExerciseGrade:
    # Points come from the grader's own view of the masters, never from the submission.
    max_points = exercise.max_points()
    points = max_points if status == "correct" else 0
    return ExerciseGrade(exercise.id, exercise.title, status, points, max_points, message)


async def _execute(
    path: Path, nb: Any, ids: list[str], cell_timeout: int, notes: list[str]
) -> dict[str, tuple[str, str]]:
    """Run the notebook plus one probe cell per exercise; return id -> (status, message)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    from labkit.grading import probe

    n_learner = len(nb.cells)
    for exercise_id in ids:
        cell = nbformat.v4.new_code_cell(probe.probe_source(exercise_id))
        cell.metadata["labkit"] = {"probe": exercise_id}
        nb.cells.append(cell)
    timed_out: set[int] = set()
    progress = {"started": -1}

    def on_start(cell: Any, cell_index: int) -> None:
        progress["started"] = cell_index

    def on_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if (execute_reply or {}).get("content", {}).get("ename") == TIMEOUT_ENAME:
            timed_out.add(cell_index)

    workdir = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    try:
        shutil.copyfile(path, workdir / path.name)
        client = NotebookClient(
            nb,
            kernel_name="python3",
            timeout=cell_timeout,
            interrupt_on_timeout=True,
            # Without this, a kernel that ignores the interrupt would be waited on forever.
            error_on_timeout={
                "ename": TIMEOUT_ENAME,
                "evalue": f"ran longer than {cell_timeout} s and was interrupted",
                "traceback": [],
            },
            allow_errors=True,
            # Timing metadata is unused, and its fallback clock for the synthetic timeout reply
            # is the deprecated utcnow().
            record_timing=False,
            resources={"metadata": {"path": str(workdir)}},
            on_cell_start=on_start,
            on_cell_executed=on_executed,
        )
        env = {
            **os.environ,
            "LAB_STATE_DIR": str(workdir / "state"),
            "LAB_GRADING": "1",
            "LAB_CHECK_LOG": str(workdir / ".labkit" / "checks.jsonl"),
        }
        env.pop("JPY_SESSION_NAME", None)
        try:
            await client.async_execute(env=env)
        except DeadKernelError:
            index = progress["started"]
            where = f"cell {index}" if index < n_learner else "a check"
            notes.append(f"The kernel died while running {where}; later cells did not run.")
        except Exception as exc:
            if progress["started"] < 0:
                raise GraderFailure(f"could not start a kernel for {path}: {exc}") from exc
            raise
    finally:
        from labkit.grading.strays import clean_up

        clean_up(workdir / "state")
        shutil.rmtree(workdir, ignore_errors=True)

    results: dict[str, tuple[str, str]] = {}
    for index in sorted(timed_out):
        if index < n_learner:
            exercise_id = nb.cells[index].metadata.get("labkit", {}).get("exercise")
            what = f"exercise {exercise_id}'s cell" if exercise_id else "a cell"
            notes.append(f"Cell {index} ({what}) ran longer than {cell_timeout} s; interrupted.")
            if exercise_id in ids:
                results[exercise_id] = (
                    "timeout",
                    f"Cell {index} ran longer than {cell_timeout} s and was interrupted: an "
                    "answer counts only when its cell runs to the end.",
                )
    for offset, exercise_id in enumerate(ids):
        index = n_learner + offset
        if exercise_id in results:
            continue
        cell = nb.cells[index]
        outcome = probe.read_outcome(cell)
        if index in timed_out:
            results[exercise_id] = (
                "timeout",
                f"The check ran longer than {cell_timeout} s and was interrupted: is your code "
                "stuck in a loop?",
            )
        elif outcome is not None:
            results[exercise_id] = (str(outcome.status), outcome.text)
        elif probe.error_of(cell):
            results[exercise_id] = ("error", f"The check could not run: {probe.error_of(cell)}")
    return results
