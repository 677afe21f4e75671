"""One notebook, run and judged: a sandbox runs it, a checker outside judges it, both go.

    result = await run_unit(nb, [Episode("grade", ["04.1", "04.2"])], options, cluster)
    result.outcomes("grade")  # {"04.1": ("correct", "..."), ...}

1. A private run folder: `work/` (the notebook, its state; read-write in the sandbox) and
   `chan/` (sockets of the grader's mock LLM and PostgreSQL; read-only there).
2. The grader's mock LLM for this unit, locked (admin token, salted replies), reached from the
   sandbox only through `chan/llm.sock`; a PostgreSQL role and database of its own when the
   grader has a cluster (labkit.grading.witness).
3. The sandbox (labkit.grading.sandbox) runs the notebook. At each servant cell the learner's
   definitions are served (labkit.grading.servant) until the checker is done with them.
4. The checker (labkit.grading.checker), a process that runs no learner code, judges each
   episode's exercises against them and writes the outcomes to a file of the grader's.
5. The sandbox is killed with everything in it, and only then are its notes read and the run
   folder removed. One deadline covers 3 and 4.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labkit.exercises.outcomes import Status

MAX_NOTEBOOK_BYTES = 50 * 1024 * 1024
MAX_MESSAGE = 4000
READY_POLL_S = 0.2
# The checker's environment is an allow-list too: it never needs the grader's secrets.
CHECKER_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "LAB_SIZE", "LAB_SOLUTIONS_DIR")


@dataclass(frozen=True)
class Options:
    cell_timeout: int = 300
    deadline_s: float = 1800.0  # one notebook, run and checks together
    sandbox: bool = True  # False only with --unsafe-no-sandbox
    # `labkit verify` only (trusted masters): the kernel's own checks may read them.
    solutions: Path | None = None


@dataclass(frozen=True)
class Episode:
    """A point of the notebook where the checker takes over: a label and what it judges."""

    label: str
    exercises: list[str]


@dataclass
class UnitResult:
    """Per episode: exercise id -> (status, message), or an error; and the runner's notes."""

    episodes: dict[str, dict[str, tuple[str, str]]]
    errors: dict[str, str]
    notes: dict[str, Any]
    error: str | None = None

    def outcomes(self, label: str = "grade") -> dict[str, tuple[str, str]]:
        return self.episodes.get(label, {})


def servant_cell(label: str) -> Any:
    """The cell after which the checker takes over, for episode `label`."""
    import nbformat

    from labkit.grading.servant import cell_source

    cell = nbformat.v4.new_code_cell(cell_source(label))
    cell.metadata["labkit"] = {"servant": label}
    return cell


async def run_unit(
    nb: Any,
    episodes: list[Episode],
    options: Options,
    cluster: Any = None,
    extra_env: dict[str, str] | None = None,
) -> UnitResult:
    """Run `nb` sandboxed and judge each episode from outside; never raises for the notebook."""
    import nbformat

    from labkit.grading.relay import Relay
    from labkit.mock_llm import MockLLM

    tag = secrets.token_hex(6)
    run_dir = Path(tempfile.mkdtemp(prefix="labkit-grade-"))
    work, chan = run_dir / "work", run_dir / "chan"
    for folder in (work, chan):
        folder.mkdir(mode=0o755)
    nbformat.write(nb, work / "submission.ipynb")
    mock = MockLLM(
        preset="fast", admin_token=secrets.token_urlsafe(24), reply_salt=secrets.token_hex(16)
    )
    relays: list[Relay] = []
    database = None
    process: asyncio.subprocess.Process | None = None
    started = time.monotonic()
    result = UnitResult({}, {}, {}, "The notebook could not be started.")
    try:
        await asyncio.to_thread(mock.start)
        relays.append(Relay(listen_path=str(chan / "llm.sock"), connect_port=mock.port).start())
        env = dict(extra_env or {})
        inside = _Paths(options.sandbox, work, chan)
        if cluster is not None:
            database = await asyncio.to_thread(cluster.submission, tag)
            relays.append(
                Relay(listen_path=str(chan / ".s.PGSQL.5432"), connect_port=database.port).start()
            )
            env["LAB_DATABASE_URL"] = database.sandbox_url(inside.chan)
            env["LAB_DB_POOL"] = "0"  # held connections must show at the server
        spec = {
            "notebook": inside.work_path("submission.ipynb"),
            "servant": inside.work_path("servant.sock"),
            "llm_socket": inside.chan_path("llm.sock"),
            "notes": inside.work_path("notes.json"),
            "cell_timeout": options.cell_timeout,
        }
        (work / "inside.json").write_text(json.dumps(spec))
        process = await _start_sandbox(options, work, chan, inside, env, run_dir)
        budget = options.deadline_s - (time.monotonic() - started)
        result = await _run_checker(episodes, work, mock, database, run_dir, budget, process)
        # Cells after the last servant cell (verify's master cells) run to the end, then the
        # runner writes its notes; the deadline still bounds it.
        rest = options.deadline_s - (time.monotonic() - started)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), max(rest, 1.0))
    finally:
        if process is not None:
            await _end(process, work / "servant.sock")
        for relay in relays:
            relay.stop()
        await asyncio.to_thread(mock.stop)
        if database is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(cluster.drop, database)
        if not options.sandbox:
            from labkit.grading.strays import clean_up

            await asyncio.to_thread(clean_up, work / "state")
    # Read only now: the sandbox and everything it started are gone.
    result.notes = _notes(work)
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


@dataclass
class _Paths:
    """Where the run's folders are as the sandboxed runner sees them."""

    sandboxed: bool
    work: str
    chan: str

    def __init__(self, sandboxed: bool, work: Path, chan: Path) -> None:
        from labkit.grading.sandbox import INSIDE_CHANNEL, INSIDE_WORK

        self.sandboxed = sandboxed
        self.work = INSIDE_WORK if sandboxed else str(work)
        self.chan = INSIDE_CHANNEL if sandboxed else str(chan)

    def work_path(self, name: str) -> str:
        return f"{self.work}/{name}"

    def chan_path(self, name: str) -> str:
        return f"{self.chan}/{name}"


async def _start_sandbox(
    options: Options,
    work: Path,
    chan: Path,
    inside: _Paths,
    extra_env: dict[str, str],
    run_dir: Path,
) -> asyncio.subprocess.Process:
    from labkit.grading.sandbox import Layout, Limits, bwrap_argv, limit_resources, sandbox_env

    command = [sys.executable, "-m", "labkit.grading.inside", inside.work_path("inside.json")]
    env = sandbox_env(extra_env)
    if options.solutions is not None:
        env["LAB_SOLUTIONS_DIR"] = str(options.solutions)
    if options.sandbox:
        argv = bwrap_argv(Layout(work, chan, options.solutions), command)
    else:
        argv = command
        env = env | {"LAB_STATE_DIR": str(work / "state"), "HOME": str(work / "home")}
        env.pop("JUPYTER_RUNTIME_DIR", None)
        (work / "home").mkdir(exist_ok=True)
    log = open(run_dir / "sandbox.log", "wb")  # noqa: SIM115 - closed with the process below
    try:
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=str(work),
            start_new_session=True,
            preexec_fn=lambda: limit_resources(Limits()),
        )
    finally:
        log.close()


async def _run_checker(
    episodes: list[Episode],
    work: Path,
    mock: Any,
    database: Any,
    run_dir: Path,
    budget_s: float,
    sandbox: asyncio.subprocess.Process,
) -> UnitResult:
    """Start the checker, wait for it (or for the deadline), and read what it judged."""
    out = run_dir / "outcomes.jsonl"
    spec = {
        "servant": str(work / "servant.sock"),
        "state_dir": str(work / "state"),
        "mock": {"base_url": mock.base_url, "admin_token": mock.admin_token},
        "database_url": database.admin_url if database is not None else None,
        "witness": database.spec() if database is not None else None,
        "episodes": [{"label": e.label, "exercises": e.exercises} for e in episodes],
        "budget_s": budget_s,
        "out": str(out),
    }
    from labkit.grading.sandbox import operator_env

    env = {key: os.environ[key] for key in CHECKER_ENV if key in os.environ}
    env |= operator_env()
    checker_home = run_dir / "checker"
    checker_home.mkdir()
    env |= {"HOME": str(checker_home), "MPLCONFIGDIR": str(checker_home / "mpl")}
    checker = await asyncio.create_subprocess_exec(
        # -s -P: no user site, no cwd on sys.path; PYTHONPATH only as the operator set it.
        sys.executable, "-s", "-P", "-m", "labkit.grading.checker",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=str(checker_home),
        start_new_session=True,
    )  # fmt: skip
    assert checker.stdin is not None and checker.stderr is not None
    checker.stdin.write(json.dumps(spec).encode())
    checker.stdin.close()
    stderr_task = asyncio.ensure_future(checker.stderr.read())
    error = None
    deadline = time.monotonic() + max(budget_s, 1.0)
    while checker.returncode is None:
        if time.monotonic() > deadline:
            error = "The notebook and its checks ran past the grading deadline."
            break
        if sandbox.returncode is not None:
            # The notebook has ended: whatever the checker still waits for will not come.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(checker.wait(), 10)
            break
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(checker.wait(), READY_POLL_S)
    if checker.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(checker.pid, signal.SIGKILL)
        await checker.wait()
    stderr = await stderr_task
    return _read_outcomes(out, error, stderr)


def _read_outcomes(out: Path, error: str | None, stderr: bytes) -> UnitResult:
    result = UnitResult({}, {}, {}, error)
    try:
        lines = out.read_text().splitlines()
    except OSError:
        lines = []
    known = {status.value for status in Status}
    for line in lines:
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if "label" not in item:
            result.error = f"The checker failed: {item.get('error', '?')}"[:MAX_MESSAGE]
            continue
        if "error" in item:
            result.errors[item["label"]] = str(item["error"])[:MAX_MESSAGE]
            continue
        outcomes = {}
        for found in item.get("outcomes", []):
            status = str(found.get("status"))
            text = str(found.get("message", ""))
            if status not in known:
                status, text = "error", f"unknown status {status!r}"
            if found.get("evidence"):
                text += "\n\n" + str(found["evidence"])
            outcomes[str(found.get("exercise"))] = (status, text[:MAX_MESSAGE])
        result.episodes[item["label"]] = outcomes
    if not lines and result.error is None and stderr.strip():
        tail = stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        result.error = ("The checker failed: " + " / ".join(tail))[:MAX_MESSAGE]
    return result


async def _end(process: asyncio.subprocess.Process, servant: Path) -> None:
    """Ask the servant to stop, give the runner a moment, then kill the sandbox outright."""
    from labkit.exercises.remote import Channel, ChannelError

    if process.returncode is None and servant.exists():
        with contextlib.suppress(ChannelError, OSError):
            await Channel(str(servant)).apost("done", {}, 3)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(process.wait(), 5)
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _notes(work: Path) -> dict[str, Any]:
    """What the sandbox's runner noted (untrusted: feedback, never a score)."""
    path = work / "notes.json"
    try:
        if path.is_symlink() or path.stat().st_size > 500_000:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def feedback(data: dict[str, Any]) -> list[str]:
    """The runner's notes as sentences for the learner."""
    notes: list[str] = []

    def listed(key: str) -> list[Any]:
        value = data.get(key)
        return value[:20] if isinstance(value, list) else []

    for index in listed("timed_out"):
        if isinstance(index, int):
            notes.append(f"Cell {index} ran past the cell timeout and was interrupted.")
    for item in listed("errors"):
        if not (isinstance(item, dict) and isinstance(item.get("cell"), int)):
            continue
        error = str(item.get("error", ""))[:200]
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        if meta.get("servant"):
            notes.append(f"The checks could not reach your notebook's definitions: {error}")
        else:
            notes.append(f"Cell {item['cell']} raised {error}")
    if isinstance(data.get("died"), str):
        notes.append("The kernel died; later cells did not run.")
    return notes
