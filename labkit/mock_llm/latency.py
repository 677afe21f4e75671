"""How long the mock takes: time to first token, time per token, and named presets.

A call of n tokens takes `ttft + n * per_token`; streamed, token i is sent at `ttft + i *
per_token`, so streamed and non-streamed calls of the same reply end at the same moment. Each
part is a `Distribution`: fixed, or lognormal given by its median and 95th percentile (the shape
real API latencies have), and any call can be a rare slow outlier.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

# z-score of the 95th percentile of a standard normal: p95 = median * exp(1.645 * sigma).
_Z95 = 1.6448536269514722
# With a fixed total latency, this share of it is spent before the first token.
FIXED_TTFT_SHARE = 0.25


class LatencyError(ValueError):
    """A latency setting that cannot be used, with the reason in the message."""


@dataclass(frozen=True)
class Distribution:
    """Seconds drawn from a lognormal of this median and p95 (fixed when p95 is None)."""

    median_s: float
    p95_s: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.median_s) or self.median_s < 0:
            raise LatencyError(f"a median of {self.median_s!r} s is not a duration (need >= 0)")
        if self.p95_s is not None and not (self.p95_s >= self.median_s and self.median_s > 0):
            raise LatencyError(
                f"p95 {self.p95_s!r} s must be at least the median {self.median_s!r} s, "
                "and the median above 0, for a lognormal"
            )

    @property
    def sigma(self) -> float:
        if self.p95_s is None or self.p95_s == self.median_s:
            return 0.0
        return math.log(self.p95_s / self.median_s) / _Z95

    def sample(self, rng: random.Random) -> float:
        sigma = self.sigma
        if sigma == 0.0:
            return self.median_s
        return rng.lognormvariate(math.log(self.median_s), sigma)

    def to_json(self) -> float | dict[str, float]:
        if self.p95_s is None:
            return self.median_s
        return {"median": self.median_s, "p95": self.p95_s}

    @classmethod
    def parse(cls, value: object, name: str) -> Distribution:
        """Read `0.3`, `"0.3"`, `"0.3:0.9"` (median:p95) or `{"median": 0.3, "p95": 0.9}`."""
        try:
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, int | float):
                return cls(float(value))
            if isinstance(value, str):
                median, _, p95 = value.partition(":")
                return cls(float(median), float(p95) if p95 else None)
            if isinstance(value, Mapping) and set(value) <= {"median", "p95"} and "median" in value:
                p95 = value.get("p95")
                return cls(float(value["median"]), None if p95 is None else float(p95))
        except LatencyError as error:
            raise LatencyError(f"{name}: {error}") from None
        except (TypeError, ValueError):
            pass
        raise LatencyError(
            f"{name}={value!r} is not a latency: use seconds (0.3), 'median:p95' ('0.3:0.9') "
            'or {"median": 0.3, "p95": 0.9}'
        )


@dataclass(frozen=True)
class Timing:
    """One call's schedule, drawn from a `LatencyModel`."""

    ttft_s: float
    per_token_s: float
    n_tokens: int

    @property
    def total_s(self) -> float:
        return self.ttft_s + self.per_token_s * self.n_tokens

    def token_offset_s(self, index: int) -> float:
        """Seconds after the call began at which token `index` (from 0) is sent."""
        return self.ttft_s + self.per_token_s * index


@dataclass(frozen=True)
class LatencyModel:
    """Time to first token plus time per token; or, when `total_s` is set, a fixed total."""

    ttft: Distribution
    per_token: Distribution
    total_s: float | None = None
    outlier_rate: float = 0.0
    outlier_factor: float = 5.0

    def __post_init__(self) -> None:
        if self.total_s is not None and not (math.isfinite(self.total_s) and self.total_s >= 0):
            raise LatencyError(f"latency_s={self.total_s!r} is not a duration (need >= 0)")
        if not 0.0 <= self.outlier_rate <= 1.0:
            raise LatencyError(f"outlier_rate={self.outlier_rate!r} must be between 0 and 1")
        if not (math.isfinite(self.outlier_factor) and self.outlier_factor >= 1.0):
            raise LatencyError(f"outlier_factor={self.outlier_factor!r} must be at least 1")

    def sample(self, n_tokens: int, rng: random.Random) -> Timing:
        """Draw the timing of one call that produces `n_tokens` tokens."""
        if self.total_s is not None:
            ttft = self.total_s * FIXED_TTFT_SHARE if n_tokens else self.total_s
            per_token = (self.total_s - ttft) / n_tokens if n_tokens else 0.0
        else:
            # One decode speed per call: a real server's speed varies between calls, not
            # between the tokens of one reply.
            ttft, per_token = self.ttft.sample(rng), self.per_token.sample(rng)
        if self.outlier_rate and rng.random() < self.outlier_rate:
            ttft, per_token = ttft * self.outlier_factor, per_token * self.outlier_factor
        return Timing(ttft, per_token, n_tokens)


@dataclass(frozen=True)
class Preset:
    """A named latency model with the connect delay that goes with it."""

    latency: LatencyModel
    connect_delay_s: float
    about: str


PRESETS: dict[str, Preset] = {
    "instant": Preset(
        LatencyModel(Distribution(0.0), Distribution(0.0)),
        connect_delay_s=0.0,
        about="no delay at all, not even to connect; for tests",
    ),
    "fast": Preset(
        LatencyModel(Distribution(0.25, 0.6), Distribution(0.006, 0.012), outlier_rate=0.01),
        connect_delay_s=0.15,
        about="a current small model: ~0.3-1 s per call",
    ),
    "gpt4-2023": Preset(
        LatencyModel(
            Distribution(0.9, 2.0), Distribution(0.07, 0.12), outlier_rate=0.02, outlier_factor=3.0
        ),
        connect_delay_s=0.15,
        about="GPT-4 as it was in 2023: ~3-8 s per call",
    ),
}
PRESETS["slow"] = PRESETS["gpt4-2023"]
