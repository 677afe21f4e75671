"""Grade submitted notebooks: each in a sandbox of its own, judged from outside it.

Every notebook is one unit (labkit.grading.unit): a bubblewrap sandbox runs its cells and then
serves its definitions; a checker process outside, which runs no learner code, evaluates the
exercises of its step against evidence the sandbox cannot forge. Where bubblewrap cannot run,
the grader refuses unless told `unsafe_no_sandbox` (trusted notebooks only: the masters, CI).
Warnings and stderr never cost points; a broken notebook costs its own exercises, never the
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STEP_NAME = re.compile(r"^(\d\d)_")


class GraderFailure(RuntimeError):
    """The grader itself could not work (no kernel, no notebooks): not a submission's fault."""


class NothingToGrade(GraderFailure):
    """The paths hold no notebooks (or do not exist)."""


class NoSandbox(GraderFailure):
    """Untrusted notebooks, and no sandbox to run them in."""


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
    sandboxed: bool = True

    @property
    def score(self) -> int:
        return sum(exercise.points for exercise in self.exercises)

    @property
    def max_score(self) -> int:
        return sum(exercise.max_points for exercise in self.exercises)


@dataclass
class Skipped:
    """A file the grader passed over, and why (listed in every report)."""

    path: str
    reason: str


@dataclass
class Batch:
    """What one `labkit grade` run found: notebooks to grade and files passed over."""

    notebooks: list[Path] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def collect(paths: Iterable[Path]) -> Batch:
    """The notebooks among `paths` (folders searched recursively) and what was passed over."""
    batch = Batch()
    for path in paths:
        if path.is_symlink():
            batch.skipped.append(Skipped(str(path), "a symbolic link: only real files are graded"))
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                _consider(found, batch, explicit=False)
        elif path.is_file():
            _consider(path, batch, explicit=True)
        else:
            raise NothingToGrade(f"{path}: no such file or folder")
    return batch


def _consider(path: Path, batch: Batch, *, explicit: bool) -> None:
    name = path.name
    if ".ipynb_checkpoints" in path.parts:
        return  # Jupyter's autosaves, never a submission
    if not name.lower().endswith(".ipynb"):
        if explicit:
            batch.skipped.append(Skipped(str(path), "not a notebook (.ipynb)"))
        return
    if path.is_symlink():
        batch.skipped.append(Skipped(str(path), "a symbolic link: only real files are graded"))
    elif not path.is_file():
        batch.skipped.append(Skipped(str(path), "not a regular file"))
    elif name.lower().endswith(".solved.ipynb"):
        batch.skipped.append(
            Skipped(str(path), "a solved copy written by `labkit solve`, not a submission")
        )
    else:
        batch.notebooks.append(path)


def grade(paths: list[Path], **options: Any) -> list[NotebookGrade]:
    """Grade every notebook under `paths` (options: see `grade_batch`)."""
    return grade_batch(paths, **options)[0]


def grade_batch(
    paths: list[Path],
    *,
    cell_timeout: int = 300,
    jobs: int = 1,
    deadline_s: float = 1800.0,
    step: str | None = None,
    unsafe_no_sandbox: bool = False,
) -> tuple[list[NotebookGrade], list[Skipped]]:
    """Grade every notebook under `paths`, `jobs` at a time; return grades and skipped files."""
    from labkit.grading.sandbox import unusable_reason
    from labkit.grading.unit import Options

    batch = collect(paths)
    if not batch.notebooks:
        raise NothingToGrade(f"no notebooks found in {', '.join(map(str, paths))}")
    sandboxed = not unsafe_no_sandbox
    if sandboxed and (why := unusable_reason()):
        raise NoSandbox(
            f"{why}. Submitted notebooks are untrusted code and are graded only in a sandbox; "
            "for notebooks you trust (your own masters), pass --unsafe-no-sandbox."
        )
    options = Options(cell_timeout=cell_timeout, deadline_s=deadline_s, sandbox=sandboxed)

    async def all_of_them() -> list[NotebookGrade]:
        gate = asyncio.Semaphore(max(1, jobs))
        cluster = LazyCluster()
        try:

            async def one(path: Path) -> NotebookGrade:
                async with gate:
                    return await grade_notebook(path, options=options, step=step, cluster=cluster)

            return list(await asyncio.gather(*(one(path) for path in batch.notebooks)))
        finally:
            await cluster.stop()

    return asyncio.run(all_of_them()), batch.skipped


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """While the block runs, SIGTERM ends the grader like Ctrl-C: its `finally` blocks stop
    sandboxes and servers. The previous handler comes back afterwards."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class LazyCluster:
    """The grading run's PostgreSQL, started the first time a notebook needs it."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._cluster: Any = None
        self._tried = False

    async def get(self) -> Any:
        async with self._lock:
            if not self._tried:
                self._tried = True
                self._cluster = await asyncio.to_thread(_start_cluster)
        return self._cluster

    async def stop(self) -> None:
        if self._cluster is not None:
            await asyncio.to_thread(self._cluster.stop)
            self._cluster = None


def _start_cluster() -> Any:
    """The grading run's PostgreSQL (database-side evidence), or None where it cannot run."""
    import tempfile

    from labkit.grading.witness import GradingCluster
    from labkit.services.postgres import PostgresService

    if os.environ.get("LAB_GRADE_POSTGRES") == "0" or not PostgresService().installed():
        return None
    home = Path(tempfile.mkdtemp(prefix="labkit-grade-pg-"))
    try:
        return GradingCluster.start(home)
    except Exception as exc:  # noqa: BLE001 - grading goes on; those checks say what is missing
        print(
            f"note: the grader's PostgreSQL did not start ({exc}); checks that read the "
            "database's own counts will report an error"
        )
        return None


def step_for(path: Path, nb: Any, explicit: str | None) -> tuple[str | None, list[str]]:
    """The step to grade `path` as: `--step`, else its file name; a differing metadata step is
    noted, never obeyed (a notebook must not choose its own checks)."""
    from labkit.exercises.notebooks import step_of

    notes: list[str] = []
    match = _STEP_NAME.match(path.name)
    step = explicit or (match.group(1) if match else None)
    declared = step_of(nb, Path("x.ipynb")) if nb is not None else None
    if declared is not None and step is not None and declared != step:
        notes.append(
            f"The notebook's metadata says step {declared}, but it is graded as step {step} "
            f"({'--step' if explicit else 'its file name'})."
        )
    if step is None and declared is not None:
        notes.append(
            f"The file name does not start with a step number; its metadata says step "
            f"{declared}, which is not trusted: rename it NN_topic.ipynb or pass --step."
        )
    return step, notes


async def grade_notebook(
    path: Path, *, options: Any = None, step: str | None = None, cluster: Any = None
) -> NotebookGrade:
    """Grade one notebook in its own sandbox; a broken notebook is graded, not raised."""
    from labkit.exercises.notebooks import NotebookError, load_notebook
    from labkit.exercises.registry import RegistryError
    from labkit.exercises.registry import exercises as step_exercises
    from labkit.grading.unit import MAX_NOTEBOOK_BYTES, Episode, Options, feedback, run_unit

    options = options or Options()
    started = time.perf_counter()
    nb, error = None, None
    try:
        if path.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise NotebookError(f"{path}: larger than {MAX_NOTEBOOK_BYTES // 2**20} MB")
        nb = load_notebook(path)
    except (NotebookError, OSError) as exc:
        error = str(exc)
    chosen, notes = step_for(path, nb, step)
    grade = NotebookGrade(str(path), chosen, error=error, notes=notes, sandboxed=options.sandbox)
    if grade.step is None:
        grade.error = grade.error or (
            f"{path}: cannot tell which step this notebook belongs to: name it NN_topic.ipynb "
            "or pass --step NN"
        )
        return grade
    try:
        registered = step_exercises(grade.step)
    except RegistryError as exc:
        grade.error = f"{path}: {exc}"
        return grade
    expected = {ex.id: ex for ex in registered if ex.feedback_only is None}
    grade.notes += [
        f"{ex.id} ({ex.title}) is feedback only, not graded: {ex.feedback_only}. "
        f"Check it in the notebook."
        for ex in registered
        if ex.feedback_only is not None
    ]
    if not expected:
        grade.notes.append(f"step {grade.step} has no exercises to check")
        return grade
    if nb is None or grade.error:
        grade.exercises = [
            _grade(ex, "error", f"Not graded: {grade.error}") for ex in expected.values()
        ]
        return grade
    graded = _for_grading(nb)
    # SQLite in the sandbox unless a check here is judged by query or connection counts.
    needs = any(ex.database_evidence for ex in expected.values())
    database = await cluster.get() if needs and cluster is not None else None
    result = await run_unit(graded, [Episode("grade", list(expected))], options, database)
    grade.notes += feedback(result.notes)
    why = result.errors.get("grade") or result.error or "The check did not run."
    outcomes = dict(result.outcomes("grade"))
    # An answer counts only when its cell ran to the end. The runner's note can only be
    # left out, never add points: without it the answer is judged on its merits.
    timed_out = result.notes.get("timed_out", [])
    for index in timed_out if isinstance(timed_out, list) else []:
        if isinstance(index, int) and 0 <= index < len(graded.cells):
            exercise_id = graded.cells[index].metadata.get("labkit", {}).get("exercise")
            if exercise_id in expected:
                outcomes[exercise_id] = (
                    "timeout",
                    f"Cell {index} ran longer than {options.cell_timeout} s and was "
                    "interrupted: an answer counts only when its cell runs to the end.",
                )
    grade.exercises = [_grade(ex, *outcomes.get(ex.id, ("error", why))) for ex in expected.values()]
    grade.duration_s = round(time.perf_counter() - started, 2)
    return grade


def _for_grading(nb: Any) -> Any:
    """The submission's cells (outputs dropped, numbered as the learner sees them), then the
    servant cell."""
    import nbformat

    from labkit.grading.unit import servant_cell

    cells = []
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            clean = nbformat.v4.new_code_cell(cell.get("source", ""))
        else:
            clean = nbformat.v4.new_markdown_cell(cell.get("source", ""))
        clean.metadata = cell.get("metadata", {})
        cells.append(clean)
    graded = nbformat.v4.new_notebook()
    graded.cells = [*cells, servant_cell("grade")]
    return graded


def _grade(exercise: Any, status: str, message: str) -> ExerciseGrade:
    # Points come from the grader's own view of the masters, never from the submission.
    max_points = exercise.max_points()
    points = max_points if status == "correct" else 0
    return ExerciseGrade(exercise.id, exercise.title, status, points, max_points, message)
