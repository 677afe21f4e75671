"""Record every check result where a grader can find it.

Two records, written for every check:
- an append-only JSON-lines event log beside the notebook, `.labkit/checks.jsonl` in the
  kernel's working directory (`LAB_CHECK_LOG` names another file), one line per check;
- the check's display output carries an `application/vnd.labkit.check+json` entry (see
  `Outcome._repr_mimebundle_`), saved with the notebook's outputs.

A log line holds the outcome's JSON plus `event`, `time` (UTC, ISO 8601) and, when Jupyter
says which notebook the kernel serves, `notebook`.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from labkit.exercises.outcomes import Outcome

ENV_LOG = "LAB_CHECK_LOG"
DEFAULT_LOG = Path(".labkit") / "checks.jsonl"

_lock = threading.Lock()


class RecordWarning(UserWarning):
    """The event log could not be written; the check result was still shown."""


def log_path() -> Path:
    """Where check events go: `LAB_CHECK_LOG`, else `.labkit/checks.jsonl` in the cwd."""
    return Path(os.environ.get(ENV_LOG) or DEFAULT_LOG).absolute()


def record(outcome: Outcome, event: str = "check") -> None:
    """Append one line for `outcome` to the event log; a failure to write only warns."""
    entry: dict[str, Any] = {
        "event": event,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **outcome.to_json(),
    }
    # Jupyter Server tells kernels which notebook they serve (jupyter_server >= 2.x).
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook:
        entry["notebook"] = notebook
    line = json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n"
    path = log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: concurrent writers never interleave a line.
        with _lock, path.open("a", encoding="utf-8") as fh:
            fh.write(line)
    except OSError as exc:
        warnings.warn(
            f"Could not record this check in {path}: {exc}. The result above still stands; "
            f"set {ENV_LOG} to a writable file to keep a record for grading.",
            RecordWarning,
            stacklevel=3,
        )


def read_log(path: Path | None = None) -> list[dict[str, Any]]:
    """All events in the log (oldest first); an absent log is empty."""
    path = path or log_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]
