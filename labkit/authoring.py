"""Build learner notebooks (and solved copies) from the instructor masters in `solutions/`.

`notebooks/NN_topic.ipynb` is generated from `solutions/NN_topic.ipynb`: every SOLUTION region
becomes its STARTER block or the placeholder `# YOUR CODE HERE` / `raise NotImplementedError()`
(indented like the region), HIDDEN TESTS go (a cell left empty by that goes too), outputs and
execution counts are stripped, and metadata is cut down to what the lab uses: the kernelspec,
`labkit.step`, cell `tags` and cell `labkit` (exercise id and points). The output depends only
on the master, so a rebuild is byte-identical and `--check` can detect drift.
See `labkit.exercises.masters` for the marker and metadata format.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from labkit.exercises.masters import Master, MasterCell, find_master, parse_master

DEFAULT_KERNELSPEC = {
    "display_name": "Python 3 (ipykernel)",
    "language": "python",
    "name": "python3",
}
SOLVED_SUFFIX = ".solved.ipynb"


@dataclass(frozen=True)
class BuildResult:
    """What building one master did (or, with `check`, would do) to its learner notebook."""

    master: Path
    target: Path
    status: str  # "written", "unchanged", "drift", "missing"

    @property
    def ok(self) -> bool:
        return self.status in ("written", "unchanged")


def masters_in(source: Path) -> list[Path]:
    """The master notebooks `NN_*.ipynb` in `source`, sorted."""
    return sorted(
        p for p in source.glob("[0-9][0-9]_*.ipynb") if not p.name.endswith(SOLVED_SUFFIX)
    )


def learner_notebook(master: Master) -> nbformat.NotebookNode:
    """The learner's notebook for `master`."""
    return _derive(master, lambda cell: cell.learner(), solved=False)


def solved_notebook(master: Master) -> nbformat.NotebookNode:
    """The master with solutions in place and markers, starters and hidden tests gone."""
    return _derive(master, lambda cell: cell.solution(hidden=False), solved=True)


def render(nb: nbformat.NotebookNode) -> str:
    """The notebook as Jupyter writes it (sorted keys, one-space indent), newline-terminated."""
    return nbformat.writes(nb, version=4) + "\n"


def build(source: Path, dest: Path, *, check: bool = False) -> list[BuildResult]:
    """Write (or with `check`, compare) the learner notebook of every master in `source`.

    Raises MarkerError for a malformed master before anything is written.
    """
    planned = []
    for path in masters_in(source):
        text = render(learner_notebook(parse_master(path)))
        planned.append((path, dest / path.name, text))
    results = []
    for path, target, text in planned:
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            status = "unchanged"
        elif check:
            status = "missing" if current is None else "drift"
        else:
            _write_atomic(target, text)
            status = "written"
        results.append(BuildResult(path, target, status))
    return results


def solved_path(step: str, source: Path, dest: Path) -> tuple[Path, Path]:
    """The master of `step` and where its solved copy goes: `dest/NN_topic.solved.ipynb`."""
    master = find_master(step, source)
    if master is None:
        raise FileNotFoundError(f"no master {step}_*.ipynb in {source}")
    return master, dest / (master.name[: -len(".ipynb")] + SOLVED_SUFFIX)


def write_solved(step: str, source: Path, dest: Path, *, force: bool = False) -> Path:
    """Write the solved copy of `step` next to the learner's notebook and return its path.

    Never writes over the learner's own notebook, and refuses to replace a solved copy that
    was edited since it was written (`force` replaces it).
    """
    master_path, target = solved_path(step, source, dest)
    # A symlink planted at the solved path must not lead the write into the learner's file.
    if target.resolve() == (dest / master_path.name).resolve():
        raise FileExistsError(f"refusing to write over the learner's notebook {target}")
    text = render(solved_notebook(parse_master(master_path)))
    if target.exists() and not force and target.read_text(encoding="utf-8") != text:
        raise FileExistsError(
            f"{target} exists and differs from the master's solution (edited?); "
            "move it away or pass --force to replace it"
        )
    _write_atomic(target, text)
    return target


def _derive(
    master: Master, source_of: Callable[[MasterCell], str], *, solved: bool
) -> nbformat.NotebookNode:
    original = master.notebook
    nb = nbformat.v4.new_notebook()
    kernelspec = original["metadata"].get("kernelspec") or DEFAULT_KERNELSPEC
    nb.metadata = nbformat.from_dict(
        {
            "kernelspec": {
                k: kernelspec[k] for k in ("display_name", "language", "name") if k in kernelspec
            },
            "language_info": {"name": "python"},
            "labkit": {"step": master.step, **({"solved": True} if solved else {})},
        }
    )
    used_ids: set[str] = set()
    for parsed, cell in zip(master.cells, original["cells"], strict=True):
        text = source_of(parsed)
        if not text.strip() and parsed.has("hidden"):
            continue  # a cell that held only hidden tests
        nb.cells.append(_clean_cell(master, parsed, cell, text, used_ids))
    return nb


def _clean_cell(
    master: Master, parsed: MasterCell, cell: Any, text: str, used_ids: set[str]
) -> nbformat.NotebookNode:
    metadata: dict[str, Any] = {}
    if cell["metadata"].get("tags"):
        metadata["tags"] = list(cell["metadata"]["tags"])
    if parsed.exercise is not None:
        points = master.exercises[parsed.exercise].points
        metadata["labkit"] = {"exercise": parsed.exercise, "points": points}
    if cell["cell_type"] == "code":
        new = nbformat.v4.new_code_cell(text, metadata=metadata)
    elif cell["cell_type"] == "markdown":
        new = nbformat.v4.new_markdown_cell(text, metadata=metadata)
        if cell.get("attachments"):
            new.attachments = nbformat.from_dict(cell["attachments"])
    else:
        new = nbformat.v4.new_raw_cell(text, metadata=metadata)
    # Ids come from the master (stable across builds); a master without ids gets index-based ones.
    cell_id = cell.get("id") or f"{master.step}-{parsed.index}"
    while cell_id in used_ids:
        cell_id += "-x"
    used_ids.add(cell_id)
    new.id = cell_id
    return new


def _write_atomic(target: Path, text: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.chmod(tmp, mode)  # mkstemp makes 0600 files; notebooks are shared like any file
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
