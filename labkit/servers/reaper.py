"""Stop a server's process group when the process that started it dies.

`python -m labkit.servers.reaper PARENT_PID GROUP_ID` waits while PARENT_PID lives, then sends
SIGTERM to process group GROUP_ID, and SIGKILL after a grace period. The kit starts one beside
each subprocess server: a kernel restarted or killed (Binder culling it, the grader's shutdown)
never runs `atexit`, and uvicorn or gunicorn workers left behind would hold memory and ports.
Hand-written rather than PR_SET_PDEATHSIG: that signal fires when the *thread* that forked
exits, and notebooks start servers from worker threads.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.5
GRACE_S = 5.0


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch(parent: int, pgid: int) -> None:
    """Return when the group is gone; end it first if the parent goes."""
    while alive(parent):
        if not group_alive(pgid):
            return  # stopped the normal way
        time.sleep(POLL_S)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + GRACE_S
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]), int(sys.argv[2]))
