"""The four outcomes of a check, as exceptions a check raises and as the result it records.

A check that returns normally passed. To say anything else it raises:

    raise Incorrect("12 queries, expected at most 2:", evidence=log.numbered())
    raise NotAttempted("`hello` is still a plain `def` view.")
    raise CheckError("Run the `boot()` cell first: Django is not configured.")

Any other exception escaping a check (a bug in the check, or the learner's code raising) becomes
the outcome `error`, summarised in one line with where it happened, never a traceback wall.
"""

from __future__ import annotations

import json
import os
import sysconfig
import traceback
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from labkit.exercises.richtext import markdown_to_plain

# The mime type a grader reads from a check's display output (and the event log's schema name).
MIME_TYPE = "application/vnd.labkit.check+json"
SCHEMA_VERSION = 1

_LABKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LIBRARY_DIRS = (
    _LABKIT_DIR,
    *{sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")},
)


class Status(StrEnum):
    """What a check concluded. `TIMEOUT` is only ever set by the grader, never by a check."""

    CORRECT = "correct"
    INCORRECT = "incorrect"
    NOT_ATTEMPTED = "not_attempted"
    ERROR = "error"
    TIMEOUT = "timeout"


class CheckFailure(Exception):
    """Base of the outcomes a check raises; `evidence` is shown verbatim under the message."""

    status: Status = Status.ERROR

    def __init__(self, message: str = "", *, evidence: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.evidence = evidence


class Incorrect(CheckFailure):
    """The learner's answer runs but is wrong; say what was measured and what was expected."""

    status = Status.INCORRECT


class NotAttempted(CheckFailure):
    """The exercise still holds its placeholder or starter code, or the name is undefined."""

    status = Status.NOT_ATTEMPTED


class CheckError(CheckFailure):
    """The check cannot run (a missing prerequisite); the learner is told how to fix it."""

    status = Status.ERROR


@dataclass(frozen=True)
class Outcome:
    """One check result: shown in the notebook, written to the event log, read by the grader."""

    exercise: str
    title: str
    status: Status
    message: str
    evidence: str = ""
    points: int = 0
    max_points: int = 1
    duration_s: float = 0.0
    detail: str = ""  # the full traceback of an error: logged for staff, never displayed

    @property
    def correct(self) -> bool:
        return self.status is Status.CORRECT

    @property
    def text(self) -> str:
        """Message and evidence as one string (what reports show)."""
        return f"{self.message}\n{self.evidence}".strip() if self.evidence else self.message

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        data["v"] = SCHEMA_VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["status"] = Status(fields["status"])
        return cls(**fields)

    def markdown(self) -> str:
        label = _LABELS[self.status]
        head = f"**{label}** · {self.exercise} {self.title} · {self.points}/{self.max_points}"
        head += " point" if self.max_points == 1 else " points"
        body = f"{head}\n\n{self.message}" if self.message else head
        if self.evidence:
            body += f"\n\n```text\n{self.evidence}\n```"
        return body

    def __str__(self) -> str:
        return markdown_to_plain(self.markdown())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        # The JSON entry is what `labkit grade` and other tools read back from saved outputs.
        return {
            "text/markdown": self.markdown(),
            "text/plain": str(self),
            MIME_TYPE: self.to_json(),
        }


_LABELS = {
    Status.CORRECT: "Correct",
    Status.INCORRECT: "Incorrect",
    Status.NOT_ATTEMPTED: "Not attempted yet",
    Status.ERROR: "Check error",
    Status.TIMEOUT: "Timed out",
}


def summarize_exception(exc: BaseException) -> tuple[str, str]:
    """Return a one-paragraph summary of `exc` for the learner, and the full traceback.

    The summary names the exception and where it was raised: the learner's cell when the
    innermost frame outside labkit is theirs, labkit itself when the check has a bug.
    """
    frames = traceback.extract_tb(exc.__traceback__)
    detail = "".join(traceback.format_exception(exc))
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if not frames:
        return f"The check stopped with {what}", detail
    last = frames[-1]
    if last.filename.startswith(_LABKIT_DIR):
        where = f"{os.path.relpath(last.filename, os.path.dirname(_LABKIT_DIR))}:{last.lineno}"
        return (
            f"The check itself failed with {what} (at {where}). This is a bug in the lab, "
            "not in your code; please report it with this message.",
            detail,
        )
    # Innermost frame that is not library code: most often a function the learner defined.
    for frame in reversed(frames):
        if not frame.filename.startswith(_LIBRARY_DIRS):
            return (
                f"Your code raised {what} (in `{frame.name}`, line {frame.lineno} of its cell).",
                detail,
            )
    return f"The check stopped with {what} (in {last.name}).", detail


def dumps(outcome: Outcome) -> str:
    """One compact JSON line for an outcome."""
    return json.dumps(outcome.to_json(), ensure_ascii=False, sort_keys=True)
