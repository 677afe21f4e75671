"""`labkit notebooks build`: generate learner notebooks from the masters in `solutions/`.

labkit notebooks build            # write notebooks/NN_topic.ipynb for every master
labkit notebooks build --check    # exit 1, naming the files, if any is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser(
        "build",
        help="write learner notebooks from the masters",
        description="Write learner notebooks from the masters: solutions become starters or "
        "placeholders, hidden tests go, outputs and execution counts are stripped.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    build.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 naming every learner notebook that differs from its build",
    )
    build.add_argument(
        "--source",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder of masters (default: $LAB_SOLUTIONS_DIR, else solutions/ in the repository)",
    )
    build.add_argument(
        "--dest",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder of learner notebooks (default: notebooks/ beside the source folder)",
    )


def run(args: argparse.Namespace) -> int:
    from labkit.authoring import build, masters_in
    from labkit.exercises.masters import MarkerError, solutions_dir
    from labkit.exercises.notebooks import NotebookError

    source = getattr(args, "source", None) or solutions_dir()
    dest = getattr(args, "dest", None) or source.parent / "notebooks"
    if not masters_in(source):
        print(f"no masters NN_*.ipynb in {source}", file=sys.stderr)
        return 1
    try:
        results = build(source, dest, check=args.check)
    except (MarkerError, NotebookError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for result in results:
        print(f"{result.status:>9}  {result.target}")
    stale = [r for r in results if not r.ok]
    if stale:
        names = ", ".join(str(r.target) for r in stale)
        print(
            f"{len(stale)} learner notebook(s) out of date: {names}. "
            "Run `labkit notebooks build` and commit the result.",
            file=sys.stderr,
        )
        return 1
    return 0
