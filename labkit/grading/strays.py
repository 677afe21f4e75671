"""End what a graded notebook left behind: processes that outlived its kernel.

A submission can start a process in a new session (`start_new_session=True`) that the kernel's
shutdown never reaches, and that could overwrite the report after the grader writes it. Every
process the kernel starts inherits the grader's environment, whose `LAB_STATE_DIR` names the
run's private temp dir; a process still carrying that value after the kernel has gone is a
stray. Not a sandbox: untrusted submissions still belong in a container.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

ENV_KEY = "LAB_STATE_DIR"


def strays(state_dir: str) -> list[psutil.Process]:
    """Processes of this user whose environment has LAB_STATE_DIR=`state_dir`."""
    found = []
    for process in psutil.process_iter(["pid", "uids"]):
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(ENV_KEY) == state_dir:
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # another user's, or gone already
    return found


def end_strays(state_dir: str, timeout_s: float = 3.0) -> list[int]:
    """Terminate (then kill) the strays of `state_dir`; return their pids."""
    found = strays(state_dir)
    for process in found:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(found, timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout_s)
    return [process.pid for process in found]


def clean_up(state: Path) -> None:
    """After a notebook's kernel has gone: stop its services cleanly, then end its strays."""
    from labkit.services.provision import stop_leftovers

    stop_leftovers(state)  # the notebook's Redis/PostgreSQL, stopped cleanly
    end_strays(str(state))  # then anything else it left running
