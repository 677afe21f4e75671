"""Prove every check can fail: `labkit verify [--step NN]`.

For each master in `solutions/` one kernel runs its cells in order (with `LAB_VERIFY=1` so
notebooks can shrink their loads). At the last cell of each exercise it runs, in turn, the
learner's starter version, each registered wrong answer and the solution, each followed by a
probe of the check, expecting `not_attempted`, `incorrect` and `correct`; then it goes on with
the solution in place. Before each variant the exercise's names are deleted, so a variant that
fails to define them cannot inherit the previous one's. Wrong answers replace the first
SOLUTION region of that cell.

A check that passes a wrong answer, or an exercise with fewer than two wrong answers, fails.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_WRONG_ANSWERS = 2


@dataclass(frozen=True)
class Proof:
    """One row of the verify table."""

    exercise: str
    proof: str
    expected: str
    got: str
    ok: bool
    message: str = ""


def verify(source: Path, *, step: str | None = None, cell_timeout: int = 300) -> list[Proof]:
    """Run every proof for the masters in `source` (only `step`'s if given)."""
    from labkit.authoring import masters_in
    from labkit.exercises.masters import parse_master

    paths = [p for p in masters_in(source) if step is None or p.name.startswith(f"{step}_")]
    if not paths:
        which = f"step {step}'s master" if step else "masters"
        return [Proof("-", "masters", "present", f"no {which} in {source}", False)]
    proofs: list[Proof] = []
    for path in paths:
        proofs += asyncio.run(_verify_master(parse_master(path), source, cell_timeout))
    return proofs


async def _verify_master(master: Any, source: Path, cell_timeout: int) -> list[Proof]:
    import nbformat
    from nbclient import NotebookClient

    from labkit.exercises.registry import exercises
    from labkit.grading import probe

    registered = {ex.id: ex for ex in exercises(master.step)}
    proofs = _structure(master, registered)
    last_cell = {ex.id: ex.cells[-1] for ex in master.exercises.values()}
    nb = nbformat.v4.new_notebook()
    workdir = Path(tempfile.mkdtemp(prefix="labkit-verify-"))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=cell_timeout,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": "CellTimeout",
            "evalue": f"over {cell_timeout} s",
            "traceback": [],
        },
        allow_errors=True,
        # Timing metadata is unused, and its fallback clock for the synthetic timeout reply
        # is the deprecated utcnow().
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    env = {
        **os.environ,
        "LAB_VERIFY": "1",
        "LAB_STATE_DIR": str(workdir / "state"),
        "LAB_SOLUTIONS_DIR": str(source.resolve()),
        "LAB_CHECK_LOG": str(workdir / ".labkit" / "checks.jsonl"),
    }

    async def run(source_code: str) -> Any:
        cell = nbformat.v4.new_code_cell(source_code)
        nb.cells.append(cell)
        return await client.async_execute_cell(cell, len(nb.cells) - 1)

    try:
        async with client.async_setup_kernel(env=env):
            for cell in master.cells:
                if cell.cell_type != "code":
                    continue
                exercise = registered.get(cell.exercise or "")
                if exercise is not None and last_cell.get(exercise.id) == cell.index:
                    for name, code, expected in _variants(cell, exercise):
                        await run(probe.forget_source(exercise.id))
                        ran = await run(code)
                        proofs.append(await _prove(run, exercise.id, name, expected, ran))
                    continue
                ran = await run(cell.solution(hidden=True))
                error = probe.error_of(ran)
                tags = master.notebook["cells"][cell.index]["metadata"].get("tags", [])
                if error and "raises-exception" not in tags:
                    proofs.append(Proof("-", f"master cell {cell.index} runs", "ok", error, False))
    finally:
        from labkit.grading.strays import clean_up

        clean_up(workdir / "state")
        shutil.rmtree(workdir, ignore_errors=True)
    return proofs


def _structure(master: Any, registered: dict[str, Any]) -> list[Proof]:
    """Rows for exercises that cannot be proven: no master cell, no class, too few mistakes."""
    rows = []
    for exercise_id in sorted(set(registered) - set(master.exercises)):
        rows.append(Proof(exercise_id, "master cell", "present", "missing", False))
    for exercise_id in sorted(set(master.exercises) - set(registered)):
        rows.append(Proof(exercise_id, "Exercise in a step module", "present", "missing", False))
    for exercise_id, exercise in sorted(registered.items()):
        n = len(exercise.wrong_answers)
        if n < MIN_WRONG_ANSWERS and exercise_id in master.exercises:
            rows.append(
                Proof(exercise_id, "wrong answers", f">= {MIN_WRONG_ANSWERS}", str(n), False)
            )
    return rows


def _variants(cell: Any, exercise: Any) -> list[tuple[str, str, str]]:
    variants = [("starter", cell.learner(), "not_attempted")]
    for name, code in exercise.wrong_answers.items():
        variants.append((f"wrong: {name}", cell.with_answer(code), "incorrect"))
    variants.append(("solution", cell.solution(hidden=True), "correct"))
    return variants


async def _prove(run: Any, exercise_id: str, name: str, expected: str, ran: Any) -> Proof:
    from labkit.grading import probe

    checked = await run(probe.probe_source(exercise_id))
    outcome = probe.read_outcome(checked)
    if outcome is None:
        got, message = "no result", probe.error_of(checked) or "the probe displayed nothing"
    else:
        got, message = str(outcome.status), outcome.text
    ok = got == expected
    if expected == "incorrect" and got == "correct":
        message = "the check accepts this mistake: it cannot fail where it should"
    cell_error = probe.error_of(ran)
    if ok and expected == "correct" and cell_error:
        ok, message = False, f"the solution cell raised {cell_error}"
    return Proof(exercise_id, name, expected, got, ok, message)


def table(proofs: list[Proof]) -> str:
    """The proofs as an aligned text table, then the check's words for each failed proof."""
    rows = [("exercise", "proof", "expected", "got", "ok")]
    rows += [(p.exercise, p.proof, p.expected, p.got, "ok" if p.ok else "FAIL") for p in proofs]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = [
        "  ".join(f"{v:<{w}}" for v, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    failed = [p for p in proofs if not p.ok and p.message]
    if failed:
        lines.append("")
        for p in failed:
            lines.append(f"{p.exercise} {p.proof}: {p.message.splitlines()[0]}")
    return "\n".join(lines)
