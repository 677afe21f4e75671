"""Run Locust as a bounded subprocess aimed at loopback, tail its raw timings, build a result."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

from labkit.load.machine import MachineMeter
from labkit.load.progress import LiveStats, Progress, make_progress, outcome
from labkit.load.results import LoadResult, Sweep, Timing
from labkit.load.scenarios import Scenario, resolve_scenario
from labkit.load.trust import LATE_MS, SATURATED_CPU

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
TAKEHOME_LOCUSTFILE = Path(__file__).parent / "templates" / "locustfile_takehome.py"
# How often the runner tails the timings, samples CPU and redraws progress.
POLL_S = 0.5
# Locust needs a second or two to import and start, and a moment to stop; past this the run
# has hung, and the process group is killed.
GRACE_S = 20.0
# Every load is bounded: longer runs belong in a real load-testing setup, not a notebook.
MAX_DURATION_S = 600
MAX_USERS = 5000
# Above this many concurrent requests per generator process, dropping arrivals is the honest
# report: the server is hopelessly behind, and more sockets would only strain the client.
MAX_IN_FLIGHT = 1000


class LoadError(RuntimeError):
    """A load run could not be made: a non-loopback URL, no server, or Locust failing."""


def loopback_base(url: str) -> str:
    """Return scheme://host:port[/prefix] of `url`, refusing anything but this machine."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LoadError(f"Load runs need an http:// URL like http://127.0.0.1:8000, got {url!r}.")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadError(
            f"Refusing to load {host!r}: load runs aim only at this machine (127.0.0.1), so a "
            "lab can never flood someone else's server. Start your app locally and pass its "
            "http://127.0.0.1:PORT URL."
        )
    return url.split("?")[0].rstrip("/")


def check_listening(base: str, timeout_s: float = 2.0) -> None:
    """Raise LoadError unless something accepts TCP connections at `base`."""
    parts = urlsplit(base)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise LoadError(
            f"Nothing is accepting connections at {base} ({exc.strerror or exc}). "
            "Start the server first, and check the port."
        ) from None


@dataclass
class LoadPlan:
    """Everything a run needs, validated; builds the Locust command and its settings."""

    url: str
    scenario: Scenario
    users: int = 50
    spawn_rate: float | None = None
    duration_s: float = 20
    wait_s: float | tuple[float, float] = 0
    mode: str = "closed"
    arrival_rate: float | None = None
    timeout_s: float = 30
    processes: int = 1
    max_in_flight: int | None = None
    latency_s: float | None = None
    workers: int | None = None
    server: str | None = None
    label: str | None = None
    base: str = field(init=False)

    def __post_init__(self) -> None:
        self.base = loopback_base(self.url)
        if self.mode not in ("closed", "open"):
            raise ValueError(f"mode is 'closed' (users) or 'open' (arrival_rate): {self.mode!r}.")
        if self.mode == "open" and not (self.arrival_rate and self.arrival_rate > 0):
            raise ValueError("An open-loop run needs arrival_rate, in requests per second.")
        if self.mode == "closed" and not 1 <= self.users <= MAX_USERS:
            raise ValueError(f"users must be 1..{MAX_USERS}, got {self.users}.")
        if not 1 <= self.duration_s <= MAX_DURATION_S:
            raise ValueError(f"duration_s must be 1..{MAX_DURATION_S} s, got {self.duration_s}.")
        # Locust's -t takes whole seconds.
        self.duration_s = max(1, round(self.duration_s))
        if not 1 <= self.processes <= (os.cpu_count() or 1):
            raise ValueError(f"processes must be 1..{os.cpu_count()} (CPUs here).")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {self.timeout_s}.")
        low, high = self.wait_s if isinstance(self.wait_s, tuple | list) else (self.wait_s,) * 2
        if not 0 <= low <= high:
            raise ValueError(f"wait_s is seconds or (min, max), 0 <= min <= max: {self.wait_s}.")

    @property
    def mean_wait_s(self) -> float:
        wait = self.wait_s
        return (wait[0] + wait[1]) / 2 if isinstance(wait, tuple | list) else float(wait)

    @property
    def in_flight_cap(self) -> int:
        """Per generator process: enough for every arrival of one timeout, within reason."""
        if self.max_in_flight:
            return max(1, math.ceil(self.max_in_flight / self.processes))
        wanted = math.ceil((self.arrival_rate or 0) * self.timeout_s / self.processes)
        return max(10, min(MAX_IN_FLIGHT, wanted))

    def command(self, workdir: Path) -> list[str]:
        if self.mode == "open":
            # One clock-driven generator per process; it splits the arrival slots with the rest.
            users, rate, user_class = self.processes, float(self.processes), "OpenUser"
        else:
            users, user_class = self.users, "ClosedUser"
            # All at once-ish: the measured window starts with the ramp, so keep it short.
            rate = self.spawn_rate or float(min(self.users * 4, 100 * self.processes))
        cmd = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "--host",
            self.base,
            "-u",
            str(users),
            "-r",
            f"{rate:g}",
            "-t",
            f"{int(self.duration_s)}s",
            "--only-summary",
            "--stop-timeout",
            "0",
            "--exit-code-on-error",
            "0",
            "--loglevel",
            "WARNING",
            "--json-file",
            str(workdir / "locust"),
        ]
        if self.processes > 1:
            cmd += ["--processes", str(self.processes)]
        return [*cmd, user_class]

    def environment(self, workdir: Path) -> dict[str, str]:
        config = {
            "scenario": self.scenario.to_dict(),
            "timings_dir": str(workdir),
            "timeout_s": self.timeout_s,
            "wait_s": list(self.wait_s) if isinstance(self.wait_s, tuple | list) else self.wait_s,
            "arrival_rate": self.arrival_rate,
            "generators": self.processes,
            "max_in_flight": self.in_flight_cap,
            "late_ms": LATE_MS,
        }
        return {**os.environ, "LABKIT_LOAD": json.dumps(config)}

    def title(self) -> str:
        load = f"{self.arrival_rate:g}/s" if self.mode == "open" else f"{self.users} users"
        return f"{self.label or self.scenario.name} · {load}"


class _Tail:
    """Read the complete new lines of every timings file since the last call."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.partial: dict[Path, bytes] = {}

    def read(self) -> tuple[list[Timing], list[dict[str, Any]]]:
        records: list[Timing] = []
        events: list[dict[str, Any]] = []
        for path in sorted(self.directory.glob("timings-*.jsonl")):
            with path.open("rb") as file:
                file.seek(self.offsets.get(path, 0))
                data = file.read()
            self.offsets[path] = self.offsets.get(path, 0) + len(data)
            *lines, self.partial[path] = (self.partial.get(path, b"") + data).split(b"\n")
            for line in lines:
                item = json.loads(line)
                if "e" in item:
                    events.append(item)
                else:
                    records.append(
                        Timing(
                            item["t"],
                            item["ms"],
                            item["status"],
                            item["kind"],
                            item["bytes"],
                            item["name"],
                            bool(item.get("rep")),
                            item.get("lag_ms"),
                        )
                    )
        return records, events


class _LocustRun:
    """One Locust subprocess from start to result; drive it with poll() until it says done."""

    def __init__(self, plan: LoadPlan, progress: Progress) -> None:
        self.plan = plan
        self.progress = progress
        self.workdir = Path(tempfile.mkdtemp(prefix="labkit-load-"))
        self.tail = _Tail(self.workdir)
        self.live = LiveStats()
        self.records: list[Timing] = []
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.cpu: dict[int, psutil.Process] = {}
        self.cpu_samples: dict[int, list[float]] = {}
        self.started_at: float | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.machine = MachineMeter()
        self.overran = False
        self.closed = False

    def start(self) -> None:
        self.launched = time.time()
        self.deadline = self.launched + self.plan.duration_s + GRACE_S
        self.machine.start()
        with (
            (self.workdir / "stdout.txt").open("wb") as out,
            (self.workdir / "stderr.txt").open("wb") as err,
        ):
            self.proc = subprocess.Popen(
                self.plan.command(self.workdir),
                env=self.plan.environment(self.workdir),
                # Out of the project folder, so Locust reads no pyproject.toml or locust.conf.
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )

    def poll(self) -> bool:
        """Take in new timings and CPU samples, redraw progress; True once Locust has exited."""
        assert self.proc is not None
        self._take()
        self._sample_cpu()
        self.machine.sample()
        now = time.time()
        elapsed = now - self.started_at if self.started_at else 0.0
        self.progress.update(self.live.snapshot(now, elapsed, float(self.plan.duration_s)))
        if self.proc.poll() is not None:
            return True
        if now > self.deadline:
            self.notes.append(
                f"Locust overran {self.plan.duration_s} s by more than {GRACE_S:.0f} s and was "
                "killed; figures cover what it recorded."
            )
            self.overran = True
            self.kill()
            return True
        return False

    def _take(self) -> None:
        records, events = self.tail.read()
        self.records += records
        self.events += events
        self.live.add(records)
        self.live.in_flight(events)
        if self.started_at is None:
            starts = [e["t"] for e in self.events if e["e"] == "start"]
            if starts or records:
                self.started_at = min(starts or [r.start for r in records])

    def _sample_cpu(self) -> None:
        """Record each Locust process's CPU use, once the load has begun."""
        assert self.proc is not None
        try:
            root = self.cpu.setdefault(self.proc.pid, psutil.Process(self.proc.pid))
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        # The first interval after start still holds Locust's import; skip it.
        measuring = self.started_at is not None and time.time() - self.started_at > POLL_S
        for process in processes:
            try:
                known = self.cpu.setdefault(process.pid, process)
                value = known.cpu_percent(None)
            except psutil.Error:
                continue
            if measuring:
                self.cpu_samples.setdefault(process.pid, []).append(value)

    def kill(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (AttributeError, ProcessLookupError, PermissionError):
            self.proc.kill()
        self.proc.wait()

    def finish(self) -> LoadResult:
        """Read the last timings, check Locust ran, and build the result."""
        assert self.proc is not None
        code = self.proc.wait()
        self._take()
        stderr = (self.workdir / "stderr.txt").read_text(errors="replace")
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        if not self.records and self.overran:
            raise LoadError(f"{self.notes[-1]} It recorded nothing. Its stderr ends:\n{tail}")
        if not self.records and not any(e["e"] == "start" for e in self.events) and code:
            raise LoadError(f"Locust failed to start (exit code {code}). Its stderr ends:\n{tail}")
        refused = sum(1 for r in self.records if r.kind == "refused")
        if self.records and refused == len(self.records):
            raise LoadError(f"{self.plan.base} refused all {refused} connections during the run.")
        result = self._result(stderr)
        self.progress.close(_summary(result), outcome(result))
        self.closed = True
        return result

    def _result(self, stderr: str) -> LoadResult:
        plan = self.plan
        starts = [e["t"] for e in self.events if e["e"] == "start"]
        stops = [e["t"] for e in self.events if e["e"] == "stop"]
        window = None
        if self.records:
            first = min([*starts, *(r.start for r in self.records)])
            last = max([*stops, *(r.end for r in self.records)])
            window = (first, last)
        cpu = [sum(s) / len(s) for s in self.cpu_samples.values() if s]
        generator_cpu = max(cpu) if cpu else None
        if ("CPU usage above" in stderr or "exceeded cpu threshold" in stderr) and not (
            generator_cpu and generator_cpu >= SATURATED_CPU
        ):
            self.notes.append(
                "Locust warned that its CPU usage passed 90%: the load generator "
                "may have been the bottleneck."
            )
        self._cross_check()
        return LoadResult.from_timings(
            self.records,
            scenario=plan.scenario.describe(),
            mode=plan.mode,
            users=plan.users if plan.mode == "closed" else None,
            arrival_rate=plan.arrival_rate if plan.mode == "open" else None,
            duration_s=plan.duration_s,
            window=window,
            wait_s=plan.mean_wait_s,
            latency_s=plan.latency_s,
            workers=plan.workers,
            server=plan.server,
            label=plan.label,
            processes=plan.processes,
            arrivals=self._arrivals(),
            generator_cpu=generator_cpu,
            machine=self.machine.stop(),
            notes=self.notes,
        )

    def _arrivals(self) -> dict[str, int] | None:
        if self.plan.mode != "open":
            return None
        totals = {"scheduled": 0, "sent": 0, "dropped": 0, "late": 0, "unfinished": 0}
        totals["max_in_flight"] = self.plan.in_flight_cap * self.plan.processes
        reports = [e for e in self.events if e["e"] == "arrivals"]
        for report in reports:
            for key in ("scheduled", "sent", "dropped", "late", "unfinished"):
                totals[key] += int(report.get(key, 0))
        if not reports:  # killed before the generators could report: count what we saw
            totals["dropped"] = sum(1 for e in self.events if e["e"] == "drop")
            totals["sent"] = len(self.records)
            totals["scheduled"] = totals["sent"] + totals["dropped"]
        # The generator judges lateness when it hands an arrival to the pool; a request can
        # still leave later if the process is short of CPU, which only its record shows.
        late_sent = sum(1 for r in self.records if (r.lag_ms or 0) > LATE_MS)
        totals["late"] = max(totals["late"], late_sent)
        return totals

    def _cross_check(self) -> None:
        """Compare our raw count with Locust's own, so a lost timings file can't go unseen."""
        try:
            stats = json.loads((self.workdir / "locust.json").read_text())
        except (OSError, ValueError):
            return
        counted = sum(int(entry.get("num_requests", 0)) for entry in stats)
        if abs(counted - len(self.records)) > max(2, 0.01 * counted):
            self.notes.append(
                f"Locust counted {counted} requests but {len(self.records)} raw "
                "timings arrived; the figures may be incomplete."
            )

    def cleanup(self) -> None:
        """Stop Locust if it still runs (an error, Ctrl-C, a cancelled task) and tidy up."""
        self.kill()
        if not self.closed:
            self.progress.close("stopped without a result", "danger")
        shutil.rmtree(self.workdir, ignore_errors=True)


def _summary(result: LoadResult) -> str:
    if not result.requests:
        return "failed: no request completed"
    if result.failed:
        return f"failed: {result.errors} of {result.requests} requests were errors"
    p95 = "—" if result.p95_ms is None else f"{result.p95_ms:.0f}"
    bound = "" if result.bound_rps is None else f" (bound_rps {result.bound_rps:.1f})"
    n = len(result.warnings)
    warned = f", {n} warning{'s' if n > 1 else ''}" if n else ""
    return (
        f"done: {result.requests} requests, {result.rps:.1f} rps{bound}, p95_ms {p95}, "
        f"errors {result.errors}{warned}"
    )


def run_load(
    url: str,
    *,
    scenario: str | Scenario = "chat",
    users: int = 50,
    spawn_rate: float | None = None,
    duration_s: float = 20,
    wait_s: float | tuple[float, float] = 0,
    mode: str = "closed",
    arrival_rate: float | None = None,
    repeat_share: float | None = None,
    timeout_s: float = 30,
    processes: int = 1,
    max_in_flight: int | None = None,
    latency_s: float | None = None,
    workers: int | None = None,
    server: str | None = None,
    label: str | None = None,
    progress: bool = True,
) -> LoadResult:
    """Load a loopback URL with Locust for `duration_s` and return what it measured.

    Closed loop (`mode="closed"`): `users` each send a request, wait for the answer, pause
    `wait_s` (seconds, or a (min, max) range) and repeat. Open loop (`mode="open"`):
    `arrival_rate` requests leave every second whatever the answers, so a slow server shows
    its queue. `latency_s` (the upstream delay views wait on) and `workers` (the server's
    concurrency) give the Little's-law bound shown beside rps; `server` and `label` name the
    run in tables. Blocks the cell while Locust runs; see `arun_load` to await instead.

    >>> result = run_load("http://127.0.0.1:8000", users=50, duration_s=20, latency_s=1.0)
    """
    plan = LoadPlan(
        url,
        resolve_scenario(scenario, repeat_share=repeat_share),
        users=users,
        spawn_rate=spawn_rate,
        duration_s=duration_s,
        wait_s=wait_s,
        mode=mode,
        arrival_rate=arrival_rate,
        timeout_s=timeout_s,
        processes=processes,
        max_in_flight=max_in_flight,
        latency_s=latency_s,
        workers=workers,
        server=server,
        label=label,
    )
    check_listening(plan.base)
    run = _LocustRun(plan, make_progress(progress, plan.title()))
    try:
        run.start()
        while not run.poll():
            time.sleep(POLL_S)
        return run.finish()
    finally:
        run.cleanup()


async def arun_load(url: str, **options: Any) -> LoadResult:
    """Like run_load (same keywords), but awaits, so the event loop keeps serving meanwhile.

    Use it when the server under test runs on the same event loop (an in-kernel uvicorn), or
    from async code: `result = await arun_load(url, users=50)`.
    """
    progress = options.pop("progress", True)
    plan = LoadPlan(
        url,
        resolve_scenario(
            options.pop("scenario", "chat"), repeat_share=options.pop("repeat_share", None)
        ),
        **options,
    )
    check_listening(plan.base)
    run = _LocustRun(plan, make_progress(progress, plan.title()))
    try:
        run.start()
        while not run.poll():
            await asyncio.sleep(POLL_S)
        return run.finish()
    finally:
        run.cleanup()


def sweep(url: str, *, users: Sequence[int], **options: Any) -> Sweep:
    """Run the same closed-loop load at each number of users; return a Sweep to tabulate or plot.

    >>> sweep("http://127.0.0.1:8000", users=[10, 50, 100], duration_s=10, latency_s=1.0)
    """
    results = [run_load(url, users=n, mode="closed", **options) for n in users]
    return Sweep("users", results)


def rate_sweep(url: str, *, rates: Sequence[float], **options: Any) -> Sweep:
    """Run the same open-loop load at each arrival rate; return a Sweep to tabulate or plot."""
    results = [run_load(url, mode="open", arrival_rate=r, **options) for r in rates]
    return Sweep("arrival_rate", results)
