"""Grading reports: JSON for tools, Markdown for learners, JUnit XML for CI dashboards.

JSON shape:

    {"notebooks": [{"path", "step", "score", "max_score", "error", "notes", "duration_s",
                    "sandboxed",
                    "exercises": [{"id", "title", "status", "points", "max_points", "message"}]}],
     "skipped": [{"path", "reason"}]}

Reports are written by the grader alone, after every sandbox is gone, each to a temporary file
renamed into place. Any value of the grader's environment that looks like a secret (a name with
KEY, TOKEN, SECRET or PASSWORD) is blanked out of every text before it is written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path
from typing import Any

from labkit.grading.runner import NotebookGrade, Skipped

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)

STATUS_TEXT = {
    "correct": "correct",
    "incorrect": "incorrect",
    "not_attempted": "not attempted",
    "error": "error",
    "timeout": "timed out",
}


def to_json(grades: list[NotebookGrade], skipped: list[Skipped] = ()) -> dict[str, Any]:
    notebooks = []
    for grade in grades:
        entry = {
            "path": grade.path,
            "step": grade.step,
            "sandboxed": grade.sandboxed,
            "score": grade.score,
            "max_score": grade.max_score,
            "error": grade.error,
            "notes": grade.notes,
            "duration_s": grade.duration_s,
            "exercises": [asdict(exercise) for exercise in grade.exercises],
        }
        notebooks.append(entry)
    return {"notebooks": notebooks, "skipped": [asdict(item) for item in skipped]}


def to_markdown(grades: list[NotebookGrade], skipped: list[Skipped] = ()) -> str:
    """Feedback a learner can read: a score table, then what to fix, exercise by exercise."""
    lines = ["# Grading report", "", "| notebook | step | score |", "|---|---|---|"]
    for grade in grades:
        score = "not graded" if grade.error else f"{grade.score} / {grade.max_score}"
        lines.append(f"| `{_cell(grade.path)}` | {grade.step or '?'} | {score} |")
    if skipped:
        lines += ["", "Not graded:", ""]
        lines += [f"- `{_cell(item.path)}`: {item.reason}" for item in skipped]
    for grade in grades:
        lines += [
            "",
            f"## `{grade.path}` (step {grade.step or '?'}): {grade.score} / {grade.max_score}",
            "",
        ]
        if grade.error:
            lines += [f"**This notebook could not be graded.** {grade.error}", ""]
        for note in grade.notes:
            lines.append(f"- {note}")
        if grade.notes:
            lines.append("")
        if not grade.exercises:
            continue
        lines += ["| exercise | status | points |", "|---|---|---|"]
        for ex in grade.exercises:
            status = STATUS_TEXT.get(ex.status, ex.status)
            lines.append(
                f"| {ex.id} {_cell(ex.title)} | {status} | {ex.points} / {ex.max_points} |"
            )
        for ex in grade.exercises:
            if ex.status == "correct" or not ex.message:
                continue
            head, _, rest = ex.message.partition("\n")
            lines += ["", f"**{ex.id} ({STATUS_TEXT.get(ex.status, ex.status)}):** {head}"]
            if rest.strip():
                lines += ["", "```text", rest.strip("\n"), "```"]
    return "\n".join(lines) + "\n"


def to_junit(grades: list[NotebookGrade], skipped: list[Skipped] = ()) -> str:
    """One test suite per notebook, one test case per exercise; skipped files as skips."""
    suites = ET.Element("testsuites", name="labkit grade")
    if skipped:
        suite = ET.SubElement(
            suites,
            "testsuite",
            name="not graded",
            tests=str(len(skipped)),
            skipped=str(len(skipped)),
        )
        for item in skipped:
            case = ET.SubElement(suite, "testcase", classname="labkit.grade", name=item.path)
            ET.SubElement(case, "skipped", message=item.reason)
    for grade in grades:
        failures = sum(ex.status in ("incorrect", "not_attempted") for ex in grade.exercises)
        errors = sum(ex.status in ("error", "timeout") for ex in grade.exercises)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"{grade.path} (step {grade.step or '?'})",
            tests=str(max(1, len(grade.exercises)) if grade.error else len(grade.exercises)),
            failures=str(failures),
            errors=str(errors + (1 if grade.error and not grade.exercises else 0)),
            time=f"{grade.duration_s:.2f}",
        )
        suite.append(ET.Comment(f" score {grade.score} / {grade.max_score} "))
        classname = f"labkit.grade.{Path(grade.path).stem}"
        if grade.error and not grade.exercises:
            case = ET.SubElement(suite, "testcase", classname=classname, name="notebook")
            ET.SubElement(case, "error", type="not_gradable", message=grade.error)
        for ex in grade.exercises:
            case = ET.SubElement(
                suite, "testcase", classname=classname, name=f"{ex.id} {ex.title}".strip()
            )
            if ex.status == "correct":
                continue
            tag = "failure" if ex.status in ("incorrect", "not_attempted") else "error"
            element = ET.SubElement(
                case, tag, type=ex.status, message=ex.message.partition("\n")[0]
            )
            element.text = ex.message
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def write_reports(
    grades: list[NotebookGrade],
    *,
    json_path: Path | None = None,
    markdown_path: Path | None = None,
    junit_path: Path | None = None,
    skipped: list[Skipped] = (),
) -> list[Path]:
    """Write the requested reports (after every run has finished) and return their paths."""
    written = []
    for path, text in (
        (
            json_path,
            lambda: json.dumps(to_json(grades, skipped), indent=2, ensure_ascii=False) + "\n",
        ),
        (markdown_path, lambda: to_markdown(grades, skipped)),
        (junit_path, lambda: to_junit(grades, skipped)),
    ):
        if path is None:
            continue
        _write_atomically(path, scrub(text()))
        written.append(path)
    return written


def scrub(text: str) -> str:
    """`text` with every secret-looking value of this environment replaced by [hidden]."""
    for name, value in os.environ.items():
        if _SECRET_NAME.search(name) and len(value) >= 6:
            text = text.replace(value, "[hidden]")
    return text


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def summary_table(grades: list[NotebookGrade]) -> str:
    """Plain-text table for the terminal."""
    rows = [("notebook", "score", "exercises")]
    for grade in grades:
        statuses = ", ".join(
            f"{ex.id} {STATUS_TEXT.get(ex.status, ex.status)}" for ex in grade.exercises
        )
        score = "not graded" if grade.error else f"{grade.score}/{grade.max_score}"
        name = f"{grade.path} (step {grade.step or '?'})"
        rows.append((name, score, statuses or (grade.error or "").split("\n")[0]))
    widths = [max(len(row[i]) for row in rows) for i in range(2)]
    return "\n".join(
        f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]}".rstrip() for row in rows
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
