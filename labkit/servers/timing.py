"""Per-request timing records kept by the in-kernel servers.

Every served request leaves one `RequestTiming`: when the server accepted it, when a worker
began running the app, and when the response was fully sent, all in `time.perf_counter()`
seconds. The gap between acceptance and start is the queueing a blocked server builds up,
which is exactly what the course wants learners to see.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["RequestTiming", "TimingRecorder"]


@dataclass(frozen=True, slots=True)
class RequestTiming:
    """One served request, in monotonic `time.perf_counter()` seconds."""

    path: str
    method: str
    status: int
    accepted_at: float
    started_at: float
    finished_at: float
    thread: str

    @property
    def waiting_s(self) -> float:
        """Seconds spent queued before a worker picked the request up."""
        return self.started_at - self.accepted_at

    @property
    def served_s(self) -> float:
        """Seconds from the app starting to the response being sent."""
        return self.finished_at - self.started_at

    @property
    def total_s(self) -> float:
        """Seconds from acceptance to the response being sent."""
        return self.finished_at - self.accepted_at

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TimingRecorder:
    """Thread-safe log of `RequestTiming`s plus live queue and in-progress counters.

    A request moves through `queued()` when the server accepts it, `started()` when a worker
    begins running the app, `responding()` when the status line goes out, and `finished()`
    once the response is sent. Servers without a queue of their own (uvicorn) skip `queued()`.
    """

    # Bounded so a long load test in a kernel that lives for hours cannot grow without limit;
    # 100 000 records is far more than any lab scenario produces between two clears.
    max_records = 100_000
    # A client can read its response before the server thread gets the GIL back to record it;
    # readers wait this long at most for responses already on their way out to be recorded.
    settle_s = 0.5

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._responding = 0
        self._records: deque[RequestTiming] = deque(maxlen=self.max_records)
        self._requests = 0
        self._queued = 0
        self._queued_peak = 0
        self._in_progress = 0
        self._in_progress_peak = 0

    def queued(self) -> float:
        """Count a request as waiting for a worker; return its acceptance time."""
        now = time.perf_counter()
        with self._lock:
            self._queued += 1
            self._queued_peak = max(self._queued_peak, self._queued)
        return now

    def dequeued(self) -> None:
        """Forget a queued request that will never run (the server is stopping)."""
        with self._lock:
            self._queued -= 1

    def started(self, *, was_queued: bool) -> float:
        """Count a request as running in the app; return its start time."""
        now = time.perf_counter()
        with self._lock:
            if was_queued:
                self._queued -= 1
            self._in_progress += 1
            self._in_progress_peak = max(self._in_progress_peak, self._in_progress)
        return now

    def responding(self) -> None:
        """Count a request as sending its response (its status line is out)."""
        with self._lock:
            self._responding += 1

    def finished(self, timing: RequestTiming, *, responded: bool) -> None:
        """Count a request as done and keep its record."""
        with self._lock:
            self._in_progress -= 1
            self._responding -= responded
            self._requests += 1
            self._records.append(timing)
            self._settled.notify_all()

    @property
    def timings(self) -> list[RequestTiming]:
        with self._lock:
            self._settle()
            return list(self._records)

    def _settle(self) -> None:
        """Wait (lock held) until responses already being sent have been recorded."""
        self._settled.wait_for(lambda: self._responding == 0, timeout=self.settle_s)

    def clear(self) -> None:
        """Drop the records and reset counters and peaks; live requests stay counted."""
        with self._lock:
            self._settle()  # or a response the caller already has would be recorded after
            self._records.clear()
            self._requests = 0
            self._queued_peak = self._queued
            self._in_progress_peak = self._in_progress

    def stats(self, *, with_queue: bool) -> dict[str, int]:
        with self._lock:
            self._settle()
            stats = {
                "requests": self._requests,
                "in_progress": self._in_progress,
                "in_progress_peak": self._in_progress_peak,
                "threads": self.threads,
            }
            if with_queue:
                stats["queued"] = self._queued
                stats["queued_peak"] = self._queued_peak
        return stats
