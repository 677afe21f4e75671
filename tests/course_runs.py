"""The course's two long runs, started as soon as the test session knows it needs them.

`labkit verify` (masters, every variant graded) and `labkit grade` (learner copies) run every
notebook, in sandboxes, mostly waiting on the mock's latency. Started by the first test after
the timing-sensitive ones (tests/conftest.py) when tests/test_course.py's runs are selected,
they overlap with the rest of the suite instead of adding their time to it; `RUNS.results()`
waits for them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


class CourseRuns:
    def __init__(self) -> None:
        self.out: Path | None = None
        self.running: dict[str, tuple[subprocess.Popen[str], IO[str]]] = {}
        self.started_at = 0.0

    def start(self) -> None:
        if self.running:
            return
        self.out = Path(tempfile.mkdtemp(prefix="labkit-course-"))
        self.started_at = time.monotonic()
        commands = {
            # Four notebooks at a time in all: verify is the longer run, so it gets three.
            "verify": ["verify", "--jobs", "3"],
            # The masters' answers are graded inside verify (each exercise's solution, judged by
            # the sandboxed grader in its master): a whole-master grade run would repeat it.
            "notebooks": ["grade", "notebooks", "--json", str(self.out / "notebooks.json"),
                          "--cell-timeout", "240", "--jobs", "1"],
        }  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "LAB_STATE_DIR"}
        for name, args in commands.items():
            log = (self.out / f"{name}.log").open("w+")  # a file: a full pipe would block it
            process = subprocess.Popen(
                [sys.executable, "-m", "labkit", *args],
                stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env,
            )  # fmt: skip
            self.running[name] = (process, log)

    def results(self, timeout_s: float) -> dict[str, tuple[int, str, Path]]:
        self.start()
        assert self.out is not None
        found = {}
        try:
            for name, (process, log) in self.running.items():
                left = timeout_s - (time.monotonic() - self.started_at)
                code = process.wait(max(left, 1.0))
                log.seek(0)
                found[name] = (code, log.read(), self.out / f"{name}.json")
        finally:
            self.stop()
        return found

    def stop(self) -> None:
        for process, log in self.running.values():
            if process.poll() is None:
                process.terminate()  # the grader stops its sandboxes and servers on SIGTERM
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()
        self.running = {}


RUNS = CourseRuns()
