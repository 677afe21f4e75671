"""The busy-machine finding: this lab's CPU against the machine's, measured and judged."""

from __future__ import annotations

import time

from labkit.load import LoadResult, Timing
from labkit.load.machine import MachineLoad, MachineMeter


def load(others_cpu_s: float, load_avg: float = 0.5) -> MachineLoad:
    return MachineLoad(
        wall_s=10.0,
        cpus=2,
        lab_cpu_s=6.0,
        kernel_cpu_s=4.0,
        machine_cpu_s=6.0 + others_cpu_s,
        load_avg=load_avg,
    )


def test_other_processes_cpu_or_a_long_run_queue_mean_busy() -> None:
    assert not load(others_cpu_s=1.0).busy  # 0.1 CPUs of others
    assert load(others_cpu_s=14.0).busy  # 1.4 of 2 CPUs
    assert load(others_cpu_s=1.0, load_avg=6.1).busy  # work queued for the CPUs
    busy = load(others_cpu_s=14.0, load_avg=6.1)
    assert busy.others_cpus == 1.4 and busy.lab_cpus == 0.6
    finding = busy.finding()
    assert finding.startswith("The machine was busy")
    assert "other processes 1.40 of 2 CPUs" in finding and "load average 6.1" in finding
    assert load(others_cpu_s=1.0).finding().startswith("The machine was not busy")


def result(machine: MachineLoad, every_s: float) -> LoadResult:
    records = [Timing(1000 + i * every_s, 1000.0, 200, None, 20, "/") for i in range(100)]
    return LoadResult.from_timings(
        records, scenario="chat", users=50, duration_s=10, latency_s=1.0, machine=machine
    )


def test_a_run_far_below_its_bound_on_a_busy_machine_names_it() -> None:
    slow = result(load(others_cpu_s=14.0, load_avg=6.1), every_s=0.12)  # ~8 of 50 rps
    assert slow.efficiency < 0.5
    (warning,) = slow.warnings
    assert warning.startswith(f"rps is {slow.efficiency:.0%} of its bound. The machine was busy")
    assert "Machine during the run: this lab used" in str(slow)
    # The same shortfall on a quiet machine is not blamed on it; a healthy run is not either.
    assert result(load(others_cpu_s=1.0), every_s=0.12).warnings == []
    assert result(load(others_cpu_s=14.0), every_s=0.02).warnings == []
    assert slow.to_dict()["machine"]["busy"] is True


def test_the_meter_sees_cpu_burnt_in_this_process() -> None:
    meter = MachineMeter()
    meter.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    meter.sample()
    measured = meter.stop()
    assert measured.kernel_cpu_s >= 0.25
    assert measured.lab_cpu_s >= measured.kernel_cpu_s * 0.9
    assert measured.machine_cpu_s >= 0.2
    assert measured.wall_s >= 0.3 and measured.cpus >= 1
