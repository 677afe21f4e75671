"""Every figure a master draws reaches the learner as an image, in a fresh kernel.

Each master whose code draws a figure (a result's `.plot()`, a timeline) runs top to bottom
in a new kernel at LAB_SIZE=quick, as nbclient (the grader, nbconvert) runs it; then every
cell that draws must carry an image/png output, and no output may be a bare
`<Figure size …>` text, which is what a figure built without pyplot shows when IPython's
inline backend was never activated.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
# A call that returns a figure: LoadResult/Comparison/Sweep.plot(), the concurrency timelines,
# a server's queueing.
DRAWS = re.compile(r"\.plot\(\)|\bplot_timeline\(|\bcompare_timelines\(|\bplot_queueing\(")
CELL_TIMEOUT_S = 300


def draws(source: str) -> bool:
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#"))
    return bool(DRAWS.search(code))


def drawing_masters() -> list[Path]:
    found = []
    for path in MASTERS:
        nb = nbformat.read(path, as_version=4)
        if any(c.cell_type == "code" and draws(c.source) for c in nb.cells):
            found.append(path)
    return found


def test_the_masters_that_draw_are_found() -> None:
    names = {p.name for p in drawing_masters()}
    assert {"02_async_views.ipynb", "06_load_testing.ipynb"} <= names, names


def execute(path: Path, workdir: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    shutil.copyfile(path, workdir / path.name)
    env = {**os.environ, "LAB_SIZE": "quick", "LAB_STATE_DIR": str(workdir / "state")}
    env.pop("JPY_SESSION_NAME", None)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute(env=env)
    finally:
        from labkit.grading.strays import clean_up

        clean_up(workdir / "state")
        nbformat.write(nb, workdir / f"executed-{path.name}")  # to read when a test fails
    return nb


def image_outputs(cell: nbformat.NotebookNode) -> int:
    return sum(1 for o in cell.get("outputs", []) if "image/png" in o.get("data", {}))


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("path", drawing_masters(), ids=lambda p: p.stem)
def test_every_drawing_cell_shows_an_image(path: Path, tmp_path: Path) -> None:
    nb = execute(path, tmp_path)
    drawing = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and draws(c.source)]
    assert drawing
    blank = [i for i in drawing if not image_outputs(nb.cells[i])]
    assert not blank, f"{path.name}: cells {blank} draw a figure but show no image"
    as_text = [
        i
        for i, cell in enumerate(nb.cells)
        for output in cell.get("outputs", [])
        if str(output.get("data", {}).get("text/plain", "")).startswith("<Figure size")
        and "image/png" not in output.get("data", {})
    ]
    assert not as_text, f"{path.name}: cells {as_text} show a figure as text"
    # The closing clean-up cell stops servers and services quietly: no stray value printed.
    cleanup = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("stop_all()")]
    for cell in cleanup:
        assert not cell.get("outputs"), f"{path.name}: the clean-up cell shows {cell.outputs}"
