"""Counters the mock keeps about itself, served at GET /_mock/stats.

Connections are counted where TCP lives: the server's protocol calls `connection_opened` and
`connection_closed` for every accepted socket. A connection whose first request is an admin call
(`/_mock/...`, e.g. `MockLLM.stats()`) is taken back out of the counts, so that looking at the
numbers does not change them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

ConnectionKey = tuple[str, int]


@dataclass
class Connection:
    """One live TCP connection: how many requests it carried, and whether it is the admin's."""

    requests: int = 0
    admin: bool = False


class Stats:
    """Totals since start or the last reset, and gauges of what is happening now."""

    def __init__(self) -> None:
        self.connections: dict[ConnectionKey, Connection] = {}
        self.connections_open = 0
        self.in_flight = 0
        self.reset()

    def reset(self) -> None:
        """Zero the totals; gauges (open connections, calls in flight) keep their values."""
        self.started = time.monotonic()
        self.cpu_started = time.process_time()
        self.connections_total = 0
        self.connections_peak = self.connections_open
        self.requests_total = 0
        self.in_flight_peak = self.in_flight
        self.streams_total = 0
        self.prompt_tokens_total = 0
        self.completion_tokens_total = 0
        self.rate_limited_total = 0
        self.cancelled_total = 0
        self.errors_total = 0
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.endpoints: Counter[str] = Counter()
        self.models: dict[str, Counter[str]] = {}

    # Connections
    def connection_opened(self, key: ConnectionKey) -> None:
        self.connections[key] = Connection()
        self.connections_total += 1
        self.connections_open += 1
        self.connections_peak = max(self.connections_peak, self.connections_open)

    def connection_closed(self, key: ConnectionKey) -> None:
        connection = self.connections.pop(key, None)
        if connection is not None and not connection.admin:
            self.connections_open -= 1

    def first_request(self, key: ConnectionKey | None, admin: bool) -> bool:
        """Note a request on connection `key`; True if it is that connection's first."""
        connection = self.connections.get(key) if key is not None else None
        if connection is None:
            return False
        connection.requests += 1
        if connection.requests > 1:
            return False
        if admin:
            connection.admin = True
            self.connections_total = max(0, self.connections_total - 1)
            self.connections_open -= 1
        return True

    # Calls
    def call_started(self) -> None:
        self.requests_total += 1
        self.in_flight += 1
        self.in_flight_peak = max(self.in_flight_peak, self.in_flight)

    def call_ended(
        self,
        status: int,
        model: str | None,
        cancelled: bool = False,
        failed: bool = False,
        endpoint: str | None = None,
    ) -> None:
        self.in_flight -= 1
        if endpoint is not None:  # calls to a generating endpoint, whatever their outcome
            self.endpoints[endpoint] += 1
        if cancelled:
            self.cancelled_total += 1
        else:
            self.statuses[status] += 1
        failed = failed or cancelled or status >= 400
        if failed:
            self.errors_total += 1
        if status == 429:
            self.rate_limited_total += 1
        if model is not None:
            counts = self.models.setdefault(model, Counter())
            counts["requests"] += 1
            counts["errors"] += failed

    def tokens_used(self, model: str, prompt: int, completion: int) -> None:
        self.prompt_tokens_total += prompt
        self.completion_tokens_total += completion
        counts = self.models.setdefault(model, Counter())
        counts["prompt_tokens"] += prompt
        counts["completion_tokens"] += completion

    def fault_injected(self, kind: str) -> None:
        self.faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything as plain JSON-ready values."""
        models = {
            name: {
                key: counts[key]
                for key in ("requests", "errors", "prompt_tokens", "completion_tokens")
            }
            for name, counts in sorted(self.models.items())
        }
        return {
            "connections_total": self.connections_total,
            "connections_open": self.connections_open,
            "connections_peak": self.connections_peak,
            "requests_total": self.requests_total,
            "in_flight": self.in_flight,
            "in_flight_peak": self.in_flight_peak,
            "streams_total": self.streams_total,
            "tokens_total": self.prompt_tokens_total + self.completion_tokens_total,
            "prompt_tokens_total": self.prompt_tokens_total,
            "completion_tokens_total": self.completion_tokens_total,
            "rate_limited_total": self.rate_limited_total,
            "errors_total": self.errors_total,
            "cancelled_total": self.cancelled_total,
            "faults": dict(sorted(self.faults.items())),
            "faults_total": sum(self.faults.values()),
            "statuses": {str(code): n for code, n in sorted(self.statuses.items())},
            "models": models,
            "endpoints": dict(sorted(self.endpoints.items())),
            "elapsed_s": round(time.monotonic() - self.started, 3),
            "cpu_s": round(time.process_time() - self.cpu_started, 3),
        }
