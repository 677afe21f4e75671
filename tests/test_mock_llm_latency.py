"""The latency model, presets and settings the mock is configured with."""

from __future__ import annotations

import random
import statistics

import pytest

from labkit.mock_llm.latency import PRESETS, Distribution, LatencyError, LatencyModel
from labkit.mock_llm.settings import PER_REQUEST_KEYS, Settings, SettingsError


def percentile(values, q):
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))]


def test_fixed_distribution_is_fixed():
    assert {Distribution(0.4).sample(random.Random(seed)) for seed in range(20)} == {0.4}


def test_lognormal_has_the_median_and_p95_asked_for():
    rng = random.Random(7)
    samples = [Distribution(0.5, 2.0).sample(rng) for _ in range(20_000)]
    assert statistics.median(samples) == pytest.approx(0.5, rel=0.05)
    assert percentile(samples, 0.95) == pytest.approx(2.0, rel=0.08)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (0.3, Distribution(0.3)),
        ("0.3", Distribution(0.3)),
        ("0.3:0.9", Distribution(0.3, 0.9)),
        ({"median": 0.3, "p95": 0.9}, Distribution(0.3, 0.9)),
    ],
)
def test_distribution_parses_every_spelling(text, expected):
    assert Distribution.parse(text, "ttft_s") == expected


@pytest.mark.parametrize("bad", ["fast", "0.9:0.3", -1, True, {"mean": 1}, [0.1]])
def test_distribution_rejects_nonsense_with_a_reason(bad):
    with pytest.raises(LatencyError, match="ttft_s"):
        Distribution.parse(bad, "ttft_s")


def test_fixed_total_is_exact_and_split_between_first_token_and_the_rest():
    timing = LatencyModel(Distribution(9), Distribution(9), total_s=1.0).sample(40, random.Random())
    assert timing.total_s == pytest.approx(1.0)
    assert 0 < timing.ttft_s < 1.0
    assert timing.token_offset_s(40) == pytest.approx(1.0)


def test_outliers_are_rare_and_slow():
    model = LatencyModel(Distribution(1.0), Distribution(0.0), outlier_rate=0.1, outlier_factor=10)
    rng = random.Random(3)
    totals = [model.sample(10, rng).total_s for _ in range(5_000)]
    share = sum(total == pytest.approx(10.0) for total in totals) / len(totals)
    assert 0.08 < share < 0.12
    assert set(totals) == {1.0, 10.0}


def median_total(preset, n_tokens=40):
    rng = random.Random(11)
    return statistics.median(
        PRESETS[preset].latency.sample(n_tokens, rng).total_s for _ in range(2_000)
    )


def test_presets_match_what_they_claim():
    assert median_total("instant") == 0 and PRESETS["instant"].connect_delay_s == 0
    assert 0.3 <= median_total("fast") <= 1.0
    assert 3.0 <= median_total("gpt4-2023") <= 8.0
    assert PRESETS["slow"] is PRESETS["gpt4-2023"]
    assert PRESETS["fast"].connect_delay_s == 0.15


def test_a_preset_applies_first_and_other_settings_refine_it():
    settings = Settings().updated({"connect_delay_s": 0, "preset": "gpt4-2023"})
    assert settings.preset == "gpt4-2023"
    assert settings.connect_delay_s == 0
    assert settings.latency.ttft == PRESETS["gpt4-2023"].latency.ttft


def test_setting_a_latency_part_drops_the_fixed_total():
    settings = Settings().updated({"latency_s": 1.0})
    assert settings.latency.total_s == 1.0
    settings = settings.updated({"ttft_s": "0.2:0.5"})
    assert settings.latency.total_s is None
    assert settings.latency.ttft == Distribution(0.2, 0.5)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"latency": 1}, "unknown setting.*latency_s"),
        ({"preset": "warp"}, "choose one of instant, fast"),
        ({"latency_s": -1}, "latency_s=-1 must be a number of seconds"),
        ({"rpm": 1.5}, "rpm=1.5 must be a whole number"),
        ({"faults": {"404": 0.1}}, "choose one of 500, 503"),
        ({"faults": {"500": 0.7, "503": 0.7}}, "at most 1"),
        ({"outlier_rate": 2}, "outlier_rate=2.0 must be between 0 and 1"),
        ({"models": []}, "non-empty list"),
        ({"reply_tokens": [5, 1]}, "min <= max"),
        ({"rate_window_s": 0}, "> 0"),
    ],
)
def test_bad_settings_say_what_is_wrong(changes, message):
    with pytest.raises(SettingsError, match=message):
        Settings().updated(changes)


def test_settings_round_trip_through_their_json():
    settings = Settings.from_preset(
        "fast", rpm=60, faults={"503": 0.1}, models="a,b", reply_tokens=10, ttft_s="0.1:0.3"
    )
    again = Settings().updated(settings.to_json())
    assert again == settings


def test_per_request_keys_are_settings():
    assert PER_REQUEST_KEYS <= set(Settings().to_json())
