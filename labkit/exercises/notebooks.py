"""Read notebook files: plainly (fast, for kernels) or validated by nbformat (for graders).

nb = read_notebook(path)      # dict, sources joined; NotebookError if it is not a notebook
step_of(nb, path)             # "02" from metadata {"labkit": {"step": "02"}} or "02_x.ipynb"
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import nbformat

_STEP_PREFIX = re.compile(r"^(\d{2})_")


class NotebookError(ValueError):
    """A file that is not a readable Jupyter notebook."""


def read_notebook(path: Path) -> dict[str, Any]:
    """Read a notebook as plain JSON (sources joined into strings), without nbformat.

    Checks read masters inside every kernel, and importing nbformat (jsonschema) there would
    cost seconds; the structure is simple enough to read directly.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise NotebookError(f"{path} is not a text file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise NotebookError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path} is JSON but not a Jupyter notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise NotebookError(f"{path} is not an nbformat 4 notebook")
    for cell in data["cells"]:
        if not isinstance(cell, dict) or "cell_type" not in cell:
            raise NotebookError(f"{path} has a cell that is not a notebook cell: {cell!r:.60}")
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
        cell.setdefault("source", "")
        cell.setdefault("metadata", {})
    data.setdefault("metadata", {})
    return data


def load_notebook(path: Path) -> nbformat.NotebookNode:
    """Read and validate a notebook with nbformat, or raise NotebookError saying what is wrong."""
    import nbformat

    read_notebook(path)  # the clearer messages for the common failures
    with warnings.catch_warnings():
        # Old or hand-edited notebooks lack cell ids; nbformat warns and we do not care.
        warnings.simplefilter("ignore")
        try:
            nb = nbformat.read(str(path), as_version=4)
            nbformat.validate(nb)
        except (nbformat.ValidationError, KeyError, TypeError, AttributeError) as exc:
            why = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
            raise NotebookError(f"{path} is not a valid notebook: {why}") from None
    return nb


def step_of(nb: dict[str, Any] | None, path: Path) -> str | None:
    """The notebook's step: metadata `labkit.step`, else the `NN_` prefix of its file name."""
    if nb is not None:
        declared = (nb.get("metadata") or {}).get("labkit", {}).get("step")
        if declared is not None:
            return f"{int(declared):02d}" if str(declared).isdigit() else str(declared)
    match = _STEP_PREFIX.match(Path(path).name)
    return match.group(1) if match else None
