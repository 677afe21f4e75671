"""Rate limits like OpenAI's: requests and tokens per window, refilled continuously.

Each limit is a bucket holding up to `limit` units that refills at `limit / window_s` per second
(OpenAI's limits behave this way: a limit of 60 per minute lets one request through per second,
not 60 at the top of each minute). A request is admitted only if both buckets can pay for it; a
refused request pays nothing and gets a 429 saying how long to wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from labkit.mock_llm.errors import ApiError

# A request needs more tokens than the bucket can ever hold: retrying is pointless.
NEVER = math.inf


@dataclass
class Bucket:
    """`limit` units per `window_s` seconds, refilled continuously."""

    limit: int
    window_s: float
    level: float
    updated: float

    @property
    def rate(self) -> float:
        return self.limit / self.window_s

    def refill(self, now: float) -> None:
        self.level = min(self.limit, self.level + (now - self.updated) * self.rate)
        self.updated = now

    def wait_s(self, cost: int) -> float:
        """Seconds until `cost` units are available (0 if they are now)."""
        if cost > self.limit:
            return NEVER
        return max(0.0, (cost - self.level) / self.rate)

    def reset_s(self) -> float:
        """Seconds until the bucket is full again."""
        return (self.limit - self.level) / self.rate


def format_duration(seconds: float) -> str:
    """Write a wait the way OpenAI's x-ratelimit-reset-* headers do: 20ms, 1.5s, 6m0s."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


class RateLimiter:
    """Requests-per-window and tokens-per-window limits; None means unlimited."""

    def __init__(
        self,
        rpm: int | None = None,
        tpm: int | None = None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.configure(rpm, tpm, window_s)

    def configure(self, rpm: int | None, tpm: int | None, window_s: float) -> None:
        """Set new limits; buckets start full, as after a quiet period."""
        now = self.clock()
        self.requests = Bucket(rpm, window_s, rpm, now) if rpm else None
        self.tokens = Bucket(tpm, window_s, tpm, now) if tpm else None
        self.window_s = window_s

    def reset(self) -> None:
        """Fill both buckets."""
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.level, bucket.updated = bucket.limit, self.clock()

    def admit(self, tokens: int, model: str) -> list[tuple[str, str]]:
        """Take one request and `tokens` tokens, returning the x-ratelimit-* headers.

        Raises ApiError 429, with OpenAI's body and retry headers, when a limit is reached.
        """
        now = self.clock()
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.refill(now)
        refusals = [
            (kind, bucket, cost, bucket.wait_s(cost))
            for kind, bucket, cost in (
                ("requests", self.requests, 1),
                ("tokens", self.tokens, tokens),
            )
            if bucket is not None and bucket.wait_s(cost) > 0
        ]
        if refusals:
            kind, bucket, cost, wait = max(refusals, key=lambda refusal: refusal[3])
            raise self._refusal(kind, bucket, cost, wait, model)
        if self.requests is not None:
            self.requests.level -= 1
        if self.tokens is not None:
            self.tokens.level -= tokens
        return self.headers()

    def headers(self) -> list[tuple[str, str]]:
        headers = []
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                headers += [
                    (f"x-ratelimit-limit-{kind}", str(bucket.limit)),
                    (f"x-ratelimit-remaining-{kind}", str(max(0, math.floor(bucket.level)))),
                    (f"x-ratelimit-reset-{kind}", format_duration(bucket.reset_s())),
                ]
        return headers

    def _refusal(self, kind: str, bucket: Bucket, cost: int, wait: float, model: str) -> ApiError:
        unit = "RPM" if kind == "requests" else "TPM"
        per = "min" if self.window_s == 60 else f"{self.window_s:g} s"
        where = f"for {model} in organization org-mock on {kind} per {per} ({unit})"
        if wait == NEVER:
            return ApiError(
                429,
                f"Request too large {where}: Limit {bucket.limit}, Requested {cost}. "
                "The input or output tokens must be reduced in order to run successfully.",
                type=kind,
                code="rate_limit_exceeded",
                # The SDK would otherwise retry a request that can never fit.
                headers=[("x-should-retry", "false"), *self.headers()],
            )
        used = bucket.limit - max(0, math.floor(bucket.level))
        retry_ms = max(1, math.ceil(wait * 1000))
        return ApiError(
            429,
            f"Rate limit reached {where}: Limit {bucket.limit}, Used {used}, Requested {cost}. "
            f"Please try again in {format_duration(wait)}. "
            "Visit https://platform.openai.com/account/rate-limits to learn more.",
            type=kind,
            code="rate_limit_exceeded",
            headers=[
                ("retry-after", str(math.ceil(wait))),
                ("retry-after-ms", str(retry_ms)),
                *self.headers(),
            ],
        )
