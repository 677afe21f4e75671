"""`labkit grade PATH…`: run submitted notebooks headless and score their exercises.

    labkit grade submissions/ --json grades.json --markdown feedback.md --junit grades.xml

Exit 0 when grading worked, whatever the scores; 1 when the grader itself failed; 2 when
there was nothing to grade.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="notebooks or folders")
    parser.add_argument(
        "--cell-timeout",
        type=int,
        default=300,
        help="seconds a cell may run before it is interrupted (its exercise: timeout)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time")
    parser.add_argument(
        "--json", type=Path, default=argparse.SUPPRESS, help="write the JSON report here"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=argparse.SUPPRESS,
        help="write learner feedback (Markdown) here",
    )
    parser.add_argument(
        "--junit", type=Path, default=argparse.SUPPRESS, help="write JUnit XML here"
    )


def run(args: argparse.Namespace) -> int:
    from labkit.grading import GraderFailure, grade, write_reports
    from labkit.grading.reports import summary_table
    from labkit.grading.runner import NothingToGrade

    try:
        grades = grade(args.paths, cell_timeout=args.cell_timeout, jobs=args.jobs)
    except GraderFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, NothingToGrade) else 1
    except Exception:  # a bug in the grader or a broken step module: staff need the traceback
        traceback.print_exc()
        print("error: the grader failed; no report was written", file=sys.stderr)
        return 1
    # Reports are written only now, after every submission has run, so nothing a submission
    # wrote can survive at the report paths.
    written = write_reports(
        grades,
        json_path=getattr(args, "json", None),
        markdown_path=getattr(args, "markdown", None),
        junit_path=getattr(args, "junit", None),
    )
    print(summary_table(grades))
    for path in written:
        print(f"wrote {path}")
    return 0
