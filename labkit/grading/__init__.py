"""Headless grading of submitted notebooks: `labkit grade PATH…` (see `runner` and `reports`)."""

from __future__ import annotations

from labkit.grading.reports import to_json, to_junit, to_markdown, write_reports
from labkit.grading.runner import ExerciseGrade, GraderFailure, NotebookGrade, collect, grade

__all__ = [
    "ExerciseGrade",
    "GraderFailure",
    "NotebookGrade",
    "collect",
    "grade",
    "to_json",
    "to_junit",
    "to_markdown",
    "write_reports",
]
