"""Execute a notebook built from cell sources in the project's kernel, as a learner would."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run_cells(
    cells: list[str], *, tmp_path: Path, timeout: int = 120, env: dict[str, str] | None = None
) -> nbformat.NotebookNode:
    """Run `cells` top to bottom in a fresh kernel (cwd `tmp_path`) and return the notebook.

    A cell that raises fails the run with nbclient's CellExecutionError, naming the cell.
    """
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    kernel_env = {**os.environ, **(env or {})}
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    # nbclient passes extra kernel arguments through to the kernel manager (env for the kernel).
    client.execute(env=kernel_env)
    return nb


def text_of(cell: nbformat.NotebookNode) -> str:
    """All text a cell printed or displayed."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        data = output.get("data", {})
        parts.append(data.get("text/plain", ""))
    return "".join(parts)
