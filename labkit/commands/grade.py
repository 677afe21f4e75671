"""`labkit grade PATH…`: run submitted notebooks headless and score their exercises.

    labkit grade submissions/ --json grades.json --markdown feedback.md --junit grades.xml

Exit 0 when grading worked, whatever the scores or however broken a submission; 1 when the
grader itself failed (no sandbox, a bug); 2 when there was nothing to grade. Each notebook runs
in a bubblewrap sandbox and is judged from outside it (see labkit.grading.runner).
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
    parser.add_argument(
        "--deadline",
        type=float,
        default=1800.0,
        help="seconds one notebook may take in all, run and checks (then everything in its "
        "sandbox is killed)",
    )
    parser.add_argument(
        "--step",
        default=None,
        help="grade every notebook as this step (NN); default: from each file name",
    )
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time")
    parser.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run notebooks without a sandbox: only for notebooks you trust (your masters)",
    )
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
    from labkit.grading.runner import exit_on_sigterm

    with exit_on_sigterm():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from labkit.grading import GraderFailure, write_reports
    from labkit.grading.reports import summary_table
    from labkit.grading.runner import NothingToGrade, grade_batch

    step = args.step
    if step is not None and not (step.isdigit() and len(step) <= 2):
        print(f"error: --step takes a step number such as 04, not {step!r}", file=sys.stderr)
        return 2
    try:
        grades, skipped = grade_batch(
            args.paths,
            cell_timeout=args.cell_timeout,
            jobs=args.jobs,
            deadline_s=args.deadline,
            step=f"{int(step):02d}" if step is not None else None,
            unsafe_no_sandbox=args.unsafe_no_sandbox,
        )
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
        skipped=skipped,
    )
    print(summary_table(grades))
    for item in skipped:
        print(f"not graded: {item.path}: {item.reason}")
    for path in written:
        print(f"wrote {path}")
    return 0
