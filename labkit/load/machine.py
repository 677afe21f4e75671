"""What the machine did during a load run: the CPU this lab got, and what everything else took.

A run far below its Little's-law bound has a reason: the server, the client, or a machine
shared with other work. `MachineMeter` tells the last apart with figures: CPU time of this
process and its descendants (the kernel's in-process servers, the mock LLM, Locust, worker
processes) against the whole machine's busy time, and the load average against the CPUs.

    meter = MachineMeter(); meter.start(); ...; meter.sample(); ...; load = meter.stop()
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import psutil

# Other processes using this many CPUs on average took a real share of the machine.
BUSY_OTHERS_CPUS = 0.5
# A 1-minute load average above CPUs x this means runnable work queued for a CPU.
BUSY_LOAD_PER_CPU = 1.5


@dataclass(frozen=True)
class MachineLoad:
    """CPU seconds over one run's wall time; `others_cpus` is everything not this lab's."""

    wall_s: float
    cpus: int
    lab_cpu_s: float  # this process and its descendants
    kernel_cpu_s: float  # this process alone: servers running in the kernel
    machine_cpu_s: float  # every process on the machine (and the hypervisor's steal)
    load_avg: float | None  # 1-minute load average at the end of the run

    @property
    def lab_cpus(self) -> float:
        """CPUs this lab used on average (1.0 = one core busy all run)."""
        return self.lab_cpu_s / self.wall_s if self.wall_s else 0.0

    @property
    def others_cpus(self) -> float:
        """CPUs other processes used on average during the run."""
        others = max(0.0, self.machine_cpu_s - self.lab_cpu_s)
        return others / self.wall_s if self.wall_s else 0.0

    @property
    def busy(self) -> bool:
        """Other work took a real share of the CPUs, or work queued for them."""
        loaded = self.load_avg is not None and self.load_avg > BUSY_LOAD_PER_CPU * self.cpus
        return self.others_cpus >= BUSY_OTHERS_CPUS or loaded

    def figures(self) -> str:
        """The measured figures, in one line."""
        load = "" if self.load_avg is None else f"; load average {self.load_avg:.1f}"
        return (
            f"this lab used {self.lab_cpus:.2f} CPUs (the kernel {self.kernel_cpu_s:.1f} s of "
            f"CPU in {self.wall_s:.1f} s), other processes {self.others_cpus:.2f} of "
            f"{self.cpus} CPUs{load}"
        )

    def finding(self) -> str:
        """What the figures say about the machine, in a sentence a learner can act on."""
        if self.busy:
            return (
                f"The machine was busy: {self.figures()}. The run competed for CPU with other "
                "work, so it measured this machine's spare CPU, not the view. Run it again "
                "when the machine is quieter (see `uptime` or `top`)."
            )
        return f"The machine was not busy ({self.figures()}): look at the server or the client."

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "others_cpus": self.others_cpus, "busy": self.busy}


def _tree_cpu(root: psutil.Process, seen: dict[int, float]) -> float:
    """CPU seconds of `root` and its live descendants; `seen` keeps each pid's last figure.

    A descendant that has ended keeps the figure last sampled, so sampling every half second
    during the run loses little of it (and nothing is counted twice once it is reaped).
    """
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return sum(seen.values())
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        seen[process.pid] = times.user + times.system
    return sum(seen.values())


def _machine_busy_s() -> float:
    """CPU seconds all CPUs spent busy since boot (steal included: another VM had them)."""
    times = psutil.cpu_times()._asdict()
    # Linux counts guest time inside user time already; idle and iowait are not busy.
    skip = ("idle", "iowait", "guest", "guest_nice")
    return sum(v for k, v in times.items() if k not in skip)


class MachineMeter:
    """Sample this lab's and the machine's CPU from start() to stop()."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.seen: dict[int, float] = {}
        self.started_at = 0.0
        self.lab_start = 0.0
        self.kernel_start = 0.0
        self.machine_start = 0.0

    def _kernel_cpu(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def start(self) -> None:
        self.started_at = time.perf_counter()
        self.lab_start = _tree_cpu(self.process, self.seen)
        self.kernel_start = self._kernel_cpu()
        self.machine_start = _machine_busy_s()

    def sample(self) -> None:
        """Note each descendant's CPU while it lives (Locust's children end before stop())."""
        _tree_cpu(self.process, self.seen)

    def stop(self) -> MachineLoad:
        lab = _tree_cpu(self.process, self.seen) - self.lab_start
        try:
            load_avg: float | None = os.getloadavg()[0]
        except OSError:
            load_avg = None
        return MachineLoad(
            wall_s=time.perf_counter() - self.started_at,
            cpus=os.cpu_count() or 1,
            lab_cpu_s=max(0.0, lab),
            kernel_cpu_s=self._kernel_cpu() - self.kernel_start,
            machine_cpu_s=_machine_busy_s() - self.machine_start,
            load_avg=load_avg,
        )
