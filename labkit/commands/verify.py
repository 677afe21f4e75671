"""`labkit verify`: prove each check passes the solution and fails the starter and mistakes.

labkit verify             # every master in solutions/
labkit verify --step 02   # one step
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--step", default=argparse.SUPPRESS, help="verify only this step (e.g. 02; default: all)"
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder of masters (default: $LAB_SOLUTIONS_DIR, else solutions/ in the repository)",
    )
    parser.add_argument(
        "--cell-timeout", type=int, default=300, help="seconds a cell may run before interrupt"
    )
    parser.add_argument("--jobs", type=int, default=1, help="masters verified at the same time")
    parser.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run the masters without bubblewrap (the checker still runs outside the kernel)",
    )


def run(args: argparse.Namespace) -> int:
    from labkit.grading.runner import exit_on_sigterm

    with exit_on_sigterm():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from labkit.exercises.masters import MarkerError, solutions_dir
    from labkit.exercises.notebooks import NotebookError
    from labkit.grading.runner import NoSandbox
    from labkit.verify import table, verify

    source = getattr(args, "source", None) or solutions_dir()
    step = getattr(args, "step", None)
    step = f"{int(step):02d}" if step and step.isdigit() else step
    try:
        proofs = verify(
            source,
            step=step,
            cell_timeout=args.cell_timeout,
            unsafe_no_sandbox=args.unsafe_no_sandbox,
            jobs=args.jobs,
        )
    except (MarkerError, NotebookError, NoSandbox) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(proofs))
    failed = sum(not p.ok for p in proofs)
    print(f"\n{len(proofs) - failed} of {len(proofs)} proofs hold.")
    return 1 if failed else 0
