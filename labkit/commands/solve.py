"""`labkit solve NN`: write a solved copy of step NN's notebook next to the learner's.

labkit solve 02       # notebooks/02_topic.solved.ipynb, outputs stripped
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("step", help="the step number, e.g. 02")
    parser.add_argument(
        "--source",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder of masters (default: $LAB_SOLUTIONS_DIR, else solutions/ in the repository)",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder of learner notebooks (default: notebooks/ beside the source folder)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace a solved copy that was edited since"
    )


def run(args: argparse.Namespace) -> int:
    from labkit.authoring import write_solved
    from labkit.exercises.masters import MarkerError, solutions_dir
    from labkit.exercises.notebooks import NotebookError

    if not args.step.isdigit():
        print(f"error: a step is a number like 02, not {args.step!r}", file=sys.stderr)
        return 2
    source = getattr(args, "source", None) or solutions_dir()
    dest = getattr(args, "dest", None) or source.parent / "notebooks"
    try:
        target = write_solved(f"{int(args.step):02d}", source, dest, force=args.force)
    except (FileNotFoundError, FileExistsError, MarkerError, NotebookError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0
