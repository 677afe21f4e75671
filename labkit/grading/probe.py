"""Cells the grader and `labkit verify` inject into a kernel, and how their outputs are read.

A probe cell checks one exercise against whatever the notebook defined by then and displays
the outcome as an `application/vnd.labkit.check+json` output. Probes are appended after the
learner's cells, so deleted, duplicated or reordered cells cannot hide an exercise.
"""

from __future__ import annotations

from typing import Any

from labkit.exercises.outcomes import MIME_TYPE, Outcome

_ALIAS = "__labkit_probe__"


def probe_source(exercise_id: str) -> str:
    """Source of a cell that checks `exercise_id` and displays the outcome as JSON."""
    return f"import labkit.grading.probe as {_ALIAS}\nawait {_ALIAS}.probe({exercise_id!r})"


def forget_source(exercise_id: str) -> str:
    """Source of a cell that removes the exercise's names, so the next variant starts clean."""
    return f"import labkit.grading.probe as {_ALIAS}\n{_ALIAS}.forget({exercise_id!r})"


async def probe(exercise_id: str) -> None:
    """Check `exercise_id` in this kernel and display the result for the grader."""
    from IPython.display import display

    from labkit.exercises.registry import find

    exercise = find(exercise_id)
    if exercise.kernel_loop:
        outcome = await exercise.aoutcome()
    else:
        outcome = exercise.outcome()  # evaluates in a worker thread: the loop is running here
    display({MIME_TYPE: outcome.to_json(), "text/plain": str(outcome)}, raw=True)


def forget(exercise_id: str) -> None:
    """Remove the names `exercise_id` reads from the user namespace."""
    from labkit.exercises.namespace import forget as forget_names
    from labkit.exercises.registry import find

    forget_names(find(exercise_id).names)


def read_outcome(cell: Any) -> Outcome | None:
    """The outcome a probe cell displayed, or None if it displayed none."""
    for output in cell.get("outputs", []):
        data = output.get("data", {})
        if MIME_TYPE in data:
            return Outcome.from_json(data[MIME_TYPE])
    return None


def error_of(cell: Any) -> str | None:
    """`ename: evalue` of the error a cell raised, or None."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            value = output.get("evalue", "")
            return f"{output.get('ename', 'Error')}: {value}" if value else output.get("ename")
    return None
