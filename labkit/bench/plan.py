"""How big a bench run is: users, latencies, durations, rounds; read from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """The scale of one run; `duration_s`, when given, replaces every load run's default."""

    users: int = 50
    latency_s: float = 1.0
    duration_s: float | None = None
    sweep_users: tuple[int, ...] = (10, 50, 200)
    sweep_latencies: tuple[float, ...] = (0.5, 2.0)
    calls: int = 1000
    rounds: int = 2

    @property
    def workers_users(self) -> int:
        """Users for the workers comparison: the sweep's largest, so one process is CPU-bound."""
        return max(self.sweep_users)

    def seconds(self, default: float) -> float:
        return self.duration_s or default

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        return cls(
            users=args.users,
            latency_s=args.latency,
            duration_s=args.duration,
            sweep_users=tuple(args.sweep_users),
            sweep_latencies=tuple(args.sweep_latencies),
            calls=args.calls,
            rounds=args.rounds,
        )


def numbers(kind: type) -> object:
    """An argparse type for a comma-separated list of positive numbers: '10,50,200'."""

    def parse(text: str) -> list:
        try:
            values = [kind(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a list like 10,50,200") from None
        if not values or any(v <= 0 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: give one or more numbers above 0")
        return values

    parse.__name__ = f"{kind.__name__} list"
    return parse
