"""What runs inside a grading sandbox: the notebook, then the servant for the checker.

    python -m labkit.grading.inside SPEC.json

The spec (written by the grader into the work folder) names the notebook, the cell timeout,
the servant's socket and the grader's LLM socket. The notebook, prepared by the grader, runs top
to bottom in a fresh kernel, errors allowed; its servant cells (labkit.grading.servant) serve
the learner's definitions to the checker until it is done with them. Notes on what happened
(cells that failed or ran out of time) go to `notes.json` for the learner's feedback: the
grader shows them, never scores them. Nothing here is trusted: this process shares the
sandbox with the learner's code.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TIMEOUT_ENAME = "CellTimeout"
SERVANT_TIMEOUT_S = 6 * 3600  # the grader's deadline ends it long before


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the prepared notebook (its servant cells included); return the notes."""
    import os

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    from labkit.grading.probe import error_of, read_outcome
    from labkit.grading.relay import relay_to
    from labkit.grading.servant import ENV_LLM_URL, ENV_SOCKET

    llm = relay_to(spec["llm_socket"], name="llm")
    nb = nbformat.read(spec["notebook"], as_version=4)
    timed_out: list[int] = []
    cell_timeout = int(spec["cell_timeout"])

    def timeout_of(cell: Any) -> int:
        return SERVANT_TIMEOUT_S if _meta(cell).get("servant") else cell_timeout

    def on_executed(cell: Any, cell_index: int, execute_reply: Any) -> None:
        if (execute_reply or {}).get("content", {}).get("ename") == TIMEOUT_ENAME:
            timed_out.append(cell_index)

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=cell_timeout,
        timeout_func=timeout_of,
        interrupt_on_timeout=True,
        error_on_timeout={
            "ename": TIMEOUT_ENAME,
            "evalue": f"ran longer than {cell_timeout} s and was interrupted",
            "traceback": [],
        },
        allow_errors=True,
        record_timing=False,
        resources={"metadata": {"path": str(Path(spec["notebook"]).parent)}},
        on_cell_executed=on_executed,
    )
    env = dict(os.environ)
    env[ENV_SOCKET] = spec["servant"]
    env[ENV_LLM_URL] = f"{llm.url}/v1"
    notes: dict[str, Any] = {"timed_out": [], "errors": [], "died": None, "kernel": {}}
    try:
        client.execute(env=env)
    except DeadKernelError:
        notes["died"] = "the kernel died; later cells did not run"
    finally:
        llm.stop()
    for index, cell in enumerate(nb.cells):
        meta = _meta(cell)
        if meta.get("kernel_probe"):
            outcome = read_outcome(cell)
            failed = error_of(cell) or "the check displayed nothing"
            notes["kernel"][meta["kernel_probe"]] = (
                str(outcome.status) if outcome else f"no result ({failed[:200]})"
            )
            continue
        if meta.get("servant"):
            failed = error_of(cell)
            if failed:  # the hand-over failed (e.g. the project would not boot): say why
                notes["errors"].append({"cell": index, "error": failed[:300], "meta": meta})
            continue
        if index in timed_out:
            notes["timed_out"].append(index)
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                error = f"{output.get('ename')}: {output.get('evalue')}"[:300]
                notes["errors"].append({"cell": index, "error": error, "meta": meta})
                break
    return notes


def _meta(cell: Any) -> dict[str, Any]:
    found = cell.get("metadata", {}).get("labkit", {})
    return found if isinstance(found, dict) else {}


def main(argv: list[str]) -> int:
    spec = json.loads(Path(argv[0]).read_text())
    notes = run(spec)
    Path(spec["notes"]).write_text(json.dumps(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
