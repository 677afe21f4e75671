"""The lab fits Binder: peak resident memory while notebook 06 runs stays within the budget.

Binder gives 2 GB; the lab keeps 1.5 GB of it. Notebook 06 runs the most processes at once
(the kernel with its in-kernel servers, the mock LLM, Locust, uvicorn workers, Redis), so its
peak is the lab's. Quick size by default; `LAB_SIZE=default pytest tests/test_memory_budget.py
-s` measures what a learner's run peaks at.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient

from labkit.services import records

MASTER = Path(__file__).resolve().parents[1] / "solutions" / "06_load_testing.ipynb"
BUDGET_BYTES = int(1.5 * 1024**3)
SAMPLE_S = 0.2


@dataclass
class Peak:
    """The largest sum of resident memory seen, and the processes that made it up."""

    bytes: int = 0
    processes: dict[str, int] = field(default_factory=dict)
    samples: int = 0


class TreeSampler:
    """Sum the RSS of a process, its descendants and extra pids every SAMPLE_S seconds."""

    def __init__(self, root: int, extra: Callable[[], list[int]]) -> None:
        self.root = root
        self.extra = extra
        self.peak = Peak()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.root)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        for pid in self.extra():
            try:
                processes.append(psutil.Process(pid))
            except psutil.Error:
                pass
        sizes: dict[str, int] = {}
        for process in {p.pid: p for p in processes}.values():
            try:
                rss = process.memory_info().rss
                name = f"{process.pid} {' '.join(process.cmdline()[:4])[:80]}"
            except psutil.Error:
                continue
            sizes[name] = rss
        total = sum(sizes.values())
        self.peak.samples += 1
        if total > self.peak.bytes:
            self.peak.bytes, self.peak.processes = total, sizes


async def _execute(tmp_path: Path) -> tuple[Peak, nbformat.NotebookNode]:
    nb = nbformat.read(MASTER, as_version=4)
    state = tmp_path / "state"
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        record_timing=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    env = {**os.environ, "LAB_VERIFY": "1", "LAB_STATE_DIR": str(state)}

    def redis_pids() -> list[int]:
        # Redis daemonizes, so it is no child of the kernel; its pid is in the state dir.
        try:
            return [record.pid for record in records(state).values()]
        except (OSError, ValueError):
            return []

    async with client.async_setup_kernel(env=env):
        kernel_pid = client.km.provisioner.pid
        with TreeSampler(kernel_pid, redis_pids) as sampler:
            for index, cell in enumerate(nb.cells):
                await client.async_execute_cell(cell, index)
            sampler.sample()
    return sampler.peak, nb


@pytest.mark.slow
def test_notebook_06_peaks_within_the_binder_budget(tmp_path: Path) -> None:
    peak, _ = asyncio.run(_execute(tmp_path))
    biggest = sorted(peak.processes.items(), key=lambda item: -item[1])[:8]
    listed = "\n".join(f"  {rss / 1024**2:7.0f} MB  {name}" for name, rss in biggest)
    print(
        f"\npeak RSS {peak.bytes / 1024**2:.0f} MB over {len(peak.processes)} processes "
        f"({peak.samples} samples, every {SAMPLE_S} s); budget {BUDGET_BYTES / 1024**2:.0f} MB"
        f"\n{listed}"
    )
    assert peak.samples > 10, "the sampler saw the notebook run for less than two seconds"
    assert peak.bytes <= BUDGET_BYTES, f"peak RSS {peak.bytes / 1024**2:.0f} MB:\n{listed}"
