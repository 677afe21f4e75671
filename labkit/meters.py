"""Timers, process CPU and the mock LLM's counters, in the course's one vocabulary.

with measure(llm=mock_llm()) as m:
    ... # run something
m.wall_s, m.cpu_s, m.cpu_percent, m.llm["connections_total"], m.to_dict()
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import psutil

# The mock's counters that grow with work done; measure() reports their change.
LLM_COUNTERS = (
    "connections_total",
    "requests_total",
    "tokens_total",
    "rate_limited_total",
)


@dataclass
class Measurement:
    """Wall time, CPU time of this process (all threads) and the LLM counters' change."""

    label: str = ""
    wall_s: float = 0.0
    cpu_s: float = 0.0
    llm: dict[str, int] = field(default_factory=dict)
    llm_in_flight_peak: int | None = None
    _process: Any = field(default=None, repr=False)
    _mock: Any = field(default=None, repr=False)
    _started: float = field(default=0.0, repr=False)
    _cpu_started: float = field(default=0.0, repr=False)
    _llm_started: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def cpu_percent(self) -> float:
        """CPU time over wall time, as a percentage of one core (200 = two cores busy)."""
        return 100 * self.cpu_s / self.wall_s if self.wall_s else 0.0

    def __enter__(self) -> Measurement:
        self._process = psutil.Process()
        if self._mock is not None:
            self._mock.reset()
            self._llm_started = {name: 0 for name in LLM_COUNTERS}
        self._cpu_started = _cpu(self._process)
        self._started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._started
        self.cpu_s = _cpu(self._process) - self._cpu_started
        if self._mock is not None:
            stats = self._mock.stats()
            self.llm = {name: stats.get(name, 0) - self._llm_started[name] for name in LLM_COUNTERS}
            self.llm_in_flight_peak = stats.get("in_flight_peak")

    async def __aenter__(self) -> Measurement:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "label": self.label,
            "wall_s": round(self.wall_s, 4),
            "cpu_s": round(self.cpu_s, 4),
            "cpu_percent": round(self.cpu_percent, 1),
        }
        if self._mock is not None:
            data |= {f"llm_{name}": value for name, value in self.llm.items()}
            data["llm_in_flight_peak"] = self.llm_in_flight_peak
        return data

    def __str__(self) -> str:
        return ", ".join(f"{key}={value}" for key, value in self.to_dict().items() if value != "")

    def _repr_markdown_(self) -> str:
        rows = [(k, v) for k, v in self.to_dict().items() if k != "label"]
        head = f"**{self.label}**\n\n" if self.label else ""
        return head + "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def measure(label: str = "", *, llm: Any = None) -> Measurement:
    """Measure the code inside `with`: wall time, CPU of this process, and `llm`'s counters.

    `llm` is a running MockLLM (e.g. `mock_llm()`); its counters are reset on entry so the
    figures are this block's alone (another user of the same mock would be counted too).
    """
    return Measurement(label=label, _mock=llm)


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system
