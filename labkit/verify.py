"""Prove every check can fail, through the grader: `labkit verify [--step NN]`.

For each master in `solutions/` one sandboxed unit (labkit.grading.unit) runs its cells in
order (with `LAB_VERIFY=1` so notebooks can shrink their loads). At the last cell of each
exercise it runs, in turn, the learner's starter version, each registered wrong answer and the
solution. After each variant the kernel checks it itself (what `q.check()` shows a learner),
then a servant cell hands over to the grader's checker, which judges it from outside as
`labkit grade` does. Expected: `not_attempted`, `incorrect`, `correct` — from the grader, and
the kernel must agree. Before each variant the exercise's names are deleted, so a variant that
fails to define them cannot inherit the previous one's. Wrong answers replace the first
SOLUTION region of that cell.

A check that passes a wrong answer, a kernel check that disagrees with the grader, or an
exercise with fewer than two wrong answers, fails.
"""

from __future__ import annotations

import asyncio
import sys
import time
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


def verify(
    source: Path,
    *,
    step: str | None = None,
    cell_timeout: int = 300,
    unsafe_no_sandbox: bool = False,
    jobs: int = 1,
) -> list[Proof]:
    """Run every proof for the masters in `source` (only `step`'s if given)."""
    from labkit.authoring import masters_in
    from labkit.exercises.masters import parse_master
    from labkit.grading.runner import LazyCluster, NoSandbox
    from labkit.grading.sandbox import unusable_reason
    from labkit.grading.unit import Options

    paths = [p for p in masters_in(source) if step is None or p.name.startswith(f"{step}_")]
    if not paths:
        which = f"step {step}'s master" if step else "masters"
        return [Proof("-", "masters", "present", f"no {which} in {source}", False)]
    if not unsafe_no_sandbox and (why := unusable_reason()):
        raise NoSandbox(f"{why}; verify proves the checks through the sandboxed grader")
    options = Options(
        cell_timeout=cell_timeout,
        deadline_s=3 * 3600.0,
        sandbox=not unsafe_no_sandbox,
        solutions=source.resolve(),
    )

    async def all_of_them() -> list[Proof]:
        gate = asyncio.Semaphore(max(1, jobs))
        cluster = LazyCluster()
        try:

            async def one(path: Path) -> list[Proof]:
                async with gate:
                    started = time.monotonic()
                    proofs = await _verify_master(parse_master(path), options, cluster)
                    took = time.monotonic() - started
                    print(
                        f"verify: {path.name}: {len(proofs)} proofs in {took:.0f} s",
                        file=sys.stderr,
                    )
                    return proofs

            found = await asyncio.gather(*(one(path) for path in paths))
        finally:
            await cluster.stop()
        return [proof for proofs in found for proof in proofs]

    return asyncio.run(all_of_them())


async def _verify_master(master: Any, options: Any, cluster: Any) -> list[Proof]:
    import nbformat

    from labkit.exercises.registry import exercises
    from labkit.grading import probe
    from labkit.grading.unit import Episode, run_unit, servant_cell

    registered = {ex.id: ex for ex in exercises(master.step)}
    proofs = _structure(master, registered)
    last_cell = {ex.id: ex.cells[-1] for ex in master.exercises.values()}
    cells: list[Any] = []
    episodes: list[Episode] = []
    expected: dict[str, tuple[str, str, str]] = {}  # label -> (exercise, proof, status)

    def add(source: str, **meta: Any) -> None:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["labkit"] = meta
        cells.append(cell)

    for cell in master.cells:
        if cell.cell_type != "code":
            continue
        exercise = registered.get(cell.exercise or "")
        if exercise is not None and last_cell.get(exercise.id) == cell.index:
            for n, (name, code, want) in enumerate(_variants(cell, exercise)):
                label = f"{exercise.id}#{n}"
                add(probe.forget_source(exercise.id))
                add(code, variant=label)
                add(probe.probe_source(exercise.id), kernel_probe=label)
                if exercise.feedback_only is None:
                    cells.append(servant_cell(label))
                    episodes.append(Episode(label, [exercise.id]))
                expected[label] = (exercise.id, name, want)
            continue
        tags = master.notebook["cells"][cell.index]["metadata"].get("tags", [])
        add(
            cell.solution(hidden=True), master_cell=cell.index, may_raise="raises-exception" in tags
        )
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    needs = any(ex.database_evidence for ex in registered.values())
    database = await cluster.get() if needs else None  # else SQLite in the sandbox
    result = await run_unit(nb, episodes, options, database, extra_env={"LAB_VERIFY": "1"})
    errors = [e for e in result.notes.get("errors", []) if isinstance(e, dict)]
    raised = {
        e["meta"]["variant"]: str(e.get("error"))
        for e in errors
        if isinstance(e.get("meta"), dict) and "variant" in e["meta"]
    }
    kernel = result.notes.get("kernel", {}) if isinstance(result.notes.get("kernel"), dict) else {}
    for label, (exercise_id, name, want) in expected.items():
        graded = result.outcomes(label).get(exercise_id)
        if registered[exercise_id].feedback_only is not None:
            # Not graded: the kernel's own check is the one learners get; prove that one.
            in_kernel = str(kernel.get(label))
            proofs.append(
                Proof(exercise_id, f"{name} (kernel check)", want, in_kernel, in_kernel == want)
            )
            continue
        if graded is None:
            why = result.errors.get(label) or result.error or "the grader gave no outcome"
            proofs.append(Proof(exercise_id, name, want, "no result", False, why))
            continue
        got, message = graded
        ok = got == want
        if want == "incorrect" and got == "correct":
            message = "the check accepts this mistake: it cannot fail where it should"
        if ok and want == "correct" and label in raised:
            ok, message = False, f"the solution cell raised {raised[label]}"
        proofs.append(Proof(exercise_id, name, want, got, ok, message))
        in_kernel = kernel.get(label)
        if in_kernel != got:
            proofs.append(
                Proof(
                    exercise_id,
                    f"{name} (kernel check)",
                    got,
                    str(in_kernel),
                    False,
                    "q.check() in the notebook and the grader disagree on this answer",
                )
            )
    errors = [e for e in result.notes.get("errors", []) if isinstance(e, dict)]
    for error in errors:
        meta = error.get("meta") if isinstance(error.get("meta"), dict) else {}
        if meta.get("servant"):
            where = f"hand-over to the grader at {meta['servant']}"
            proofs.append(Proof("-", where, "ok", str(error.get("error")), False))
        if "master_cell" in meta and not meta.get("may_raise"):
            where = f"master cell {meta['master_cell']} runs"
            proofs.append(Proof("-", where, "ok", str(error.get("error")), False))
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
