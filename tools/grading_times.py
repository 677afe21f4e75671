"""Time `labkit grade` per notebook: this checkout's sandboxed grader beside an earlier one.

    python tools/grading_times.py --before 58c54eb 00 01 02 --json docs/bench/grading.json

For each step, the master of each revision is graded by that revision's grader (the earlier
revision from a temporary `git worktree`, imported through PYTHONPATH with this venv), one
notebook at a time, at `LAB_SIZE=quick`. Prints a table and writes JSON with the scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def grade_once(root: Path, step: str, *, pythonpath: str | None) -> dict:
    """Grade `root`'s master of `step` with the grader importable from `pythonpath`."""
    [master] = sorted((root / "solutions").glob(f"{step}_*.ipynb"))
    env = {k: v for k, v in os.environ.items() if k not in ("LAB_STATE_DIR", "PYTHONPATH")}
    env["LAB_SIZE"] = "quick"
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    with tempfile.TemporaryDirectory() as out:
        report = Path(out) / "grades.json"
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "labkit", "grade", str(master), "--json", str(report)],
            capture_output=True, text=True, cwd=root, env=env, timeout=3600,
        )  # fmt: skip
        wall_s = time.perf_counter() - started
        if result.returncode != 0 or not report.exists():
            return {"error": (result.stderr or result.stdout)[-500:], "wall_s": round(wall_s, 1)}
        [graded] = json.loads(report.read_text())["notebooks"]
    return {
        "notebook": master.name,
        "wall_s": round(wall_s, 1),
        "score": graded["score"],
        "max_score": graded["max_score"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="+", help="step numbers, e.g. 00 01 02")
    parser.add_argument("--before", required=True, help="the earlier revision (a git ref)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), args.before],
            cwd=ROOT, check=True, capture_output=True,
        )  # fmt: skip
        try:
            for step in args.steps:
                before = grade_once(old, step, pythonpath=str(old))
                now = grade_once(ROOT, step, pythonpath=None)
                ratio = (
                    round(now["wall_s"] / before["wall_s"], 2)
                    if "error" not in before and "error" not in now
                    else None
                )
                rows.append({"step": step, "before": before, "sandboxed": now, "ratio": ratio})
                print(f"{step}: before {before} | sandboxed {now} | ratio {ratio}", flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True
            )
    result = {
        "scenario": {
            "what": "labkit grade of one master, one notebook at a time, LAB_SIZE=quick",
            "before": args.before,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "measured": time.strftime("%Y-%m-%d"),
        },
        "rows": rows,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
