"""Rate-limit buckets and fault draws, on a fake clock and a seeded generator."""

from __future__ import annotations

import json
import random

import pytest

from labkit.mock_llm.errors import ApiError
from labkit.mock_llm.faults import (
    FAULT_KINDS,
    FaultError,
    choose,
    parse_kind,
    parse_rate_option,
    parse_rates,
)
from labkit.mock_llm.limits import RateLimiter, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_requests_limit_refuses_with_openai_body_and_retry_headers():
    clock = Clock()
    limiter = RateLimiter(rpm=3, window_s=60, clock=clock)
    for remaining in (2, 1, 0):
        headers = dict(limiter.admit(10, "mock-gpt"))
        assert headers["x-ratelimit-remaining-requests"] == str(remaining)
    with pytest.raises(ApiError) as refused:
        limiter.admit(10, "mock-gpt")
    error = refused.value
    body = json.loads(error.body())["error"]
    assert error.status == 429
    assert body["type"] == "requests" and body["code"] == "rate_limit_exceeded"
    assert "Limit 3, Used 3, Requested 1" in body["message"]
    headers = dict(error.headers)
    # One request refills every 20 s at 3 per minute.
    assert headers["retry-after"] == "20"
    assert headers["retry-after-ms"] == "20000"
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-reset-requests"] == "1m0s"


def test_a_refused_request_costs_nothing_and_the_bucket_refills():
    clock = Clock()
    limiter = RateLimiter(rpm=2, window_s=1, clock=clock)
    limiter.admit(1, "m")
    limiter.admit(1, "m")
    for _ in range(3):
        with pytest.raises(ApiError):
            limiter.admit(1, "m")
    clock.now += 0.5  # exactly one request's worth
    limiter.admit(1, "m")
    with pytest.raises(ApiError):
        limiter.admit(1, "m")


def test_tokens_limit_counts_tokens_and_names_its_type():
    clock = Clock()
    limiter = RateLimiter(tpm=100, window_s=60, clock=clock)
    limiter.admit(60, "m")
    with pytest.raises(ApiError) as refused:
        limiter.admit(60, "m")
    body = json.loads(refused.value.body())["error"]
    assert body["type"] == "tokens"
    assert dict(refused.value.headers)["retry-after-ms"] == "12000"  # 20 tokens at 100/60 s
    clock.now += 12
    limiter.admit(60, "m")


def test_a_request_that_can_never_fit_is_not_worth_retrying():
    limiter = RateLimiter(tpm=50, clock=Clock())
    with pytest.raises(ApiError) as refused:
        limiter.admit(80, "m")
    headers = dict(refused.value.headers)
    assert headers["x-should-retry"] == "false"
    assert "retry-after" not in headers
    assert "Request too large" in refused.value.message


def test_no_limits_means_no_headers_and_no_refusals():
    limiter = RateLimiter()
    for _ in range(1000):
        assert limiter.admit(10_000, "m") == []


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0204, "21ms"), (1.5, "1.5s"), (17.28, "17.28s"), (360, "6m0s")]
)
def test_durations_are_written_like_openai(seconds, text):
    assert format_duration(seconds) == text


def test_faults_are_drawn_at_their_rates():
    rng = random.Random(5)
    draws = [choose({"500": 0.2, "hang": 0.1}, rng) for _ in range(10_000)]
    assert draws.count("500") / len(draws) == pytest.approx(0.2, abs=0.02)
    assert draws.count("hang") / len(draws) == pytest.approx(0.1, abs=0.015)
    assert set(draws) == {"500", "hang", None}
    assert choose({}, rng) is None


def test_fault_spellings():
    assert parse_kind("none") is None and parse_kind(" 503 ") == "503"
    assert parse_rate_option("cut=0.25") == ("cut", 0.25)
    assert parse_rates({"malformed": 0.1, "500": 0}) == {"malformed": 0.1}
    for bad in ("cut", "cut=x", "boom=0.1"):
        with pytest.raises(FaultError, match="--fault"):
            parse_rate_option(bad)
    with pytest.raises(FaultError, match="probability"):
        parse_rates({"500": 1.5})
    assert set(FAULT_KINDS) == {"500", "503", "hang", "cut", "malformed"}
