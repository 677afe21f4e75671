"""Read instructor masters (`solutions/NN_topic.ipynb`): markers, exercise cells, variants.

A master is a normal notebook that runs top to bottom. Inside a cell, nbgrader's markers fence
what learners must not see, each on a line of its own:

    ### BEGIN SOLUTION / ### END SOLUTION          the answer; learners get a placeholder
    ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS  instructor-only asserts; removed for learners
    ### BEGIN STARTER / ### END STARTER            what learners start from instead of the
                                                   placeholder; commented out (`# `) in the
                                                   master, right before its SOLUTION region

A code cell holding a solution names its exercise in its metadata (Edit → Cell metadata):

    {"labkit": {"exercise": "02.1", "points": 2}}

`points` defaults to 1; an exercise may span cells (declare its points once). The notebook's
step comes from `{"labkit": {"step": "02"}}` in the notebook metadata or the `NN_` file name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labkit.exercises.notebooks import NotebookError, read_notebook, step_of

ENV_SOLUTIONS = "LAB_SOLUTIONS_DIR"
PLACEHOLDER_CODE = ("# YOUR CODE HERE", "raise NotImplementedError()")
PLACEHOLDER_TEXT = "YOUR ANSWER HERE"
EXERCISE_ID = re.compile(r"^\d{2}\.\d+$")
_MARKERS = {
    f"### {edge} {name}": (edge, kind)
    for edge in ("BEGIN", "END")
    for name, kind in (("SOLUTION", "solution"), ("HIDDEN TESTS", "hidden"), ("STARTER", "starter"))
}
# Typos of a marker (`## BEGIN SOLUTION`, `### END SOLUTIONS`) would otherwise ship answers.
_NEAR_MISS = re.compile(r"^\s*#+\s*(BEGIN|END)\s+(SOLUTIONS?|HIDDEN\b|TESTS?\b|STARTERS?)")


class MarkerError(ValueError):
    """A master's markers or exercise metadata are malformed; names file, cell and line."""

    def __init__(self, path: Path | str, cell: int, line: int, message: str) -> None:
        self.path, self.cell, self.line = str(path), cell, line
        super().__init__(f"{path}: cell {cell}, line {line}: {message}")


@dataclass(frozen=True)
class Region:
    """A fenced block: `solution`, `hidden` or `starter` (a solution may carry its starter)."""

    kind: str
    indent: str
    body: tuple[str, ...]
    line: int
    starter: tuple[str, ...] | None = None


Part = str | Region  # a plain line or a region


@dataclass(frozen=True)
class MasterCell:
    """One cell of a master with its markers parsed."""

    index: int
    cell_type: str
    parts: tuple[Part, ...]
    exercise: str | None = None
    points: int | None = None

    def has(self, kind: str) -> bool:
        return any(isinstance(p, Region) and p.kind == kind for p in self.parts)

    def learner(self) -> str:
        """The learner's version: starters or placeholders for solutions, no hidden tests."""
        return self._render(lambda r: self._for_learner(r))

    def solution(self, hidden: bool = False) -> str:
        """The solved version (markers and starters dropped; hidden tests kept if `hidden`)."""
        return self._render(lambda r: list(r.body) if r.kind == "solution" or hidden else [])

    def with_answer(self, code: str) -> str:
        """The cell with its first solution region replaced by `code` (a wrong answer)."""
        used = False

        def answer(region: Region) -> list[str]:
            nonlocal used
            if region.kind != "solution":
                return []
            if used:
                return list(region.body)
            used = True
            return [
                f"{region.indent}{line}" if line else "" for line in code.strip("\n").split("\n")
            ]

        return self._render(answer)

    def _for_learner(self, region: Region) -> list[str]:
        if region.kind != "solution":
            return []
        if region.starter is not None:
            return list(region.starter)
        if self.cell_type != "code":
            return [PLACEHOLDER_TEXT]
        return [f"{region.indent}{line}" for line in PLACEHOLDER_CODE]

    def _render(self, replace: Any) -> str:
        lines: list[str] = []
        for part in self.parts:
            lines.extend([part] if isinstance(part, str) else replace(part))
        while lines and not lines[-1].strip():
            lines.pop()
        return "\n".join(lines)


@dataclass(frozen=True)
class MasterExercise:
    """What a master says about one exercise."""

    id: str
    points: int
    cells: tuple[int, ...]
    solution: str  # the solved cells, as a learner would read them
    starter: str  # the learner's cells before any edit


@dataclass
class Master:
    """A parsed master notebook."""

    path: Path
    step: str
    notebook: dict[str, Any]  # the JSON, sources joined (see read_notebook)
    cells: list[MasterCell]
    exercises: dict[str, MasterExercise] = field(default_factory=dict)


def parse_cell(source: str, path: Path | str, index: int, cell_type: str = "code") -> list[Part]:
    """Split a cell's source into plain lines and regions; raise MarkerError on bad markers."""
    parts: list[Part] = []
    open_kind, open_line, indent, body = "", 0, "", []
    for number, line in enumerate(source.split("\n"), start=1):
        marker = _MARKERS.get(line.strip())
        if marker is None:
            if _NEAR_MISS.match(line):
                raise MarkerError(path, index, number, f"malformed marker {line.strip()!r}")
            (body if open_kind else parts).append(line)
            continue
        edge, kind = marker
        if edge == "BEGIN":
            if open_kind:
                raise MarkerError(
                    path,
                    index,
                    number,
                    f"{line.strip()!r} is nested inside the {_begin(open_kind)!r} of line "
                    f"{open_line}; close that first",
                )
            open_kind, open_line, indent, body = (
                kind,
                number,
                line[: len(line) - len(line.lstrip())],
                [],
            )
            continue
        if not open_kind:
            raise MarkerError(path, index, number, f"{line.strip()!r} without a {_begin(kind)!r}")
        if kind != open_kind:
            raise MarkerError(
                path,
                index,
                number,
                f"{line.strip()!r} closes the {_begin(open_kind)!r} of line {open_line}",
            )
        region = Region(open_kind, indent, tuple(body), open_line)
        parts.append(_pair_starter(parts, region, path, index, cell_type))
        open_kind = ""
    if open_kind:
        raise MarkerError(
            path,
            index,
            open_line,
            f"{_begin(open_kind)!r} is never closed (expected {_begin(open_kind, 'END')!r})",
        )
    for part in parts:
        if isinstance(part, Region) and part.kind == "starter":
            raise MarkerError(
                path,
                index,
                part.line,
                "a STARTER block must come right before the SOLUTION region it stands in for",
            )
    return parts


def _begin(kind: str, edge: str = "BEGIN") -> str:
    return next(m for m, (e, k) in _MARKERS.items() if e == edge and k == kind)


def _pair_starter(
    parts: list[Part], region: Region, path: Path | str, index: int, cell_type: str
) -> Region:
    """Attach the starter block just before a solution region (blank lines may sit between)."""
    if region.kind != "solution":
        return region
    back = len(parts)
    while back and isinstance(parts[back - 1], str) and not parts[back - 1].strip():
        back -= 1
    previous = parts[back - 1] if back else None
    if not (isinstance(previous, Region) and previous.kind == "starter"):
        return region
    del parts[back - 1 :]
    lines = []
    for offset, line in enumerate(previous.body, start=previous.line + 1):
        if not line.strip():
            lines.append("")
            continue
        if cell_type == "code":
            if not line.startswith(previous.indent + "#"):
                raise MarkerError(
                    path,
                    index,
                    offset,
                    "starter lines must be commented out (`# `) so the master still runs",
                )
            rest = line[len(previous.indent) + 1 :]
            line = previous.indent + (rest[1:] if rest.startswith(" ") else rest)
        lines.append(line)
    return Region(region.kind, region.indent, region.body, region.line, tuple(lines))


def parse_master(path: Path) -> Master:
    """Parse a master notebook; raise MarkerError naming cell and line on any authoring slip."""
    nb = read_notebook(path)
    step = step_of(nb, path)
    if step is None:
        raise MarkerError(
            path, 0, 0, 'no step: name it NN_topic.ipynb or set {"labkit": {"step": "NN"}}'
        )
    cells: list[MasterCell] = []
    for index, cell in enumerate(nb["cells"]):
        cell_type = cell["cell_type"]
        parts = parse_cell(cell["source"], path, index, cell_type)
        meta = cell["metadata"].get("labkit", {})
        exercise, points = meta.get("exercise"), meta.get("points")
        has_solution = any(isinstance(p, Region) and p.kind == "solution" for p in parts)
        first = next((p.line for p in parts if isinstance(p, Region)), 1)
        if exercise is None and has_solution and cell_type == "code":
            raise MarkerError(
                path,
                index,
                first,
                "a solution region needs the cell to name its exercise in the cell metadata: "
                f'{{"labkit": {{"exercise": "{step}.1", "points": 1}}}}',
            )
        if exercise is not None:
            if not (isinstance(exercise, str) and EXERCISE_ID.match(exercise)):
                raise MarkerError(
                    path, index, 1, f"exercise id {exercise!r} is not like '{step}.1'"
                )
            if not exercise.startswith(f"{step}."):
                raise MarkerError(path, index, 1, f"exercise {exercise} is not in step {step}")
            if not has_solution:
                raise MarkerError(
                    path, index, 1, f"exercise {exercise}'s cell has no SOLUTION region"
                )
            if points is not None and (type(points) is not int or points < 0):
                raise MarkerError(path, index, 1, f"points must be a whole number, not {points!r}")
        cells.append(MasterCell(index, cell_type, tuple(parts), exercise, points))
    master = Master(Path(path), step, nb, cells)
    master.exercises = _exercises(master)
    return master


def _exercises(master: Master) -> dict[str, MasterExercise]:
    found: dict[str, list[MasterCell]] = {}
    for cell in master.cells:
        if cell.exercise is not None:
            found.setdefault(cell.exercise, []).append(cell)
    result = {}
    for exercise_id, cells in sorted(found.items()):
        declared = {cell.points for cell in cells if cell.points is not None}
        if len(declared) > 1:
            raise MarkerError(
                master.path,
                cells[-1].index,
                1,
                f"exercise {exercise_id} declares different points on its cells: "
                f"{sorted(declared)}",
            )
        result[exercise_id] = MasterExercise(
            id=exercise_id,
            points=declared.pop() if declared else 1,
            cells=tuple(cell.index for cell in cells),
            solution="\n\n".join(cell.solution() for cell in cells),
            starter="\n\n".join(cell.learner() for cell in cells),
        )
    return result


def solutions_dir() -> Path:
    """`LAB_SOLUTIONS_DIR`, else `solutions/` at the repository root (beside `labkit/`)."""
    configured = os.environ.get(ENV_SOLUTIONS)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "solutions"


def find_master(step: str, directory: Path | None = None) -> Path | None:
    """The master `NN_*.ipynb` of `step` in `directory`, or None."""
    directory = solutions_dir() if directory is None else directory
    matches = sorted(
        p for p in directory.glob(f"{step}_*.ipynb") if not p.name.endswith(".solved.ipynb")
    )
    if len(matches) > 1:
        raise NotebookError(f"step {step} has several masters in {directory}: {matches}")
    return matches[0] if matches else None


_cache: dict[Path, tuple[tuple[int, int], Master]] = {}


def master_for_step(step: str, directory: Path | None = None) -> Master | None:
    """The parsed master of `step`, cached until the file changes; None if there is none."""
    path = find_master(step, directory)
    if path is None:
        return None
    stat = path.stat()
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _cache.get(path)
    if cached is None or cached[0] != key:
        cached = (key, parse_master(path))
        _cache[path] = cached
    return cached[1]


def master_exercise(exercise_id: str, directory: Path | None = None) -> MasterExercise | None:
    """What the step's master says about `exercise_id`, or None without master or cell."""
    master = master_for_step(exercise_id.split(".")[0], directory)
    return None if master is None else master.exercises.get(exercise_id)
