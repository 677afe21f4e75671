"""The mock's settings: one vocabulary for CLI flags, `MockLLM(...)`, `/_mock/config` and calls.

Settings are immutable; `updated()` applies a mapping of changes and returns new settings, or
raises SettingsError naming the setting and what it accepts. A `preset` is applied first, so
`{"preset": "fast", "connect_delay_s": 0}` means "fast, but without the connect delay".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from labkit.mock_llm.faults import FaultError, parse_kind, parse_rates
from labkit.mock_llm.latency import PRESETS, Distribution, LatencyError, LatencyModel

DEFAULT_MODELS: tuple[str, ...] = (
    "mock-gpt", "gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano",
    "gpt-5", "gpt-5-mini", "gpt-5-nano", "gpt-4", "gpt-3.5-turbo",
)  # fmt: skip
DEFAULT_PRESET = "fast"

# What a single call may change through its `mock` body field or x-mock-* headers.
PER_REQUEST_KEYS = frozenset(
    {"preset", "latency_s", "ttft_s", "per_token_s", "outlier_rate", "outlier_factor", "fault",
     "hang_s"}
)  # fmt: skip


class SettingsError(ValueError):
    """A setting that cannot be used, with the reason in the message."""


@dataclass(frozen=True)
class Settings:
    """Everything that shapes the mock's answers; see `updated()` for the keys."""

    preset: str = DEFAULT_PRESET
    latency: LatencyModel = PRESETS[DEFAULT_PRESET].latency
    connect_delay_s: float = PRESETS[DEFAULT_PRESET].connect_delay_s
    rpm: int | None = None
    tpm: int | None = None
    rate_window_s: float = 60.0
    faults: Mapping[str, float] = field(default_factory=dict)
    fault: str | None = None  # forced on every call; mostly used per request
    hang_s: float = 300.0
    models: tuple[str, ...] = DEFAULT_MODELS
    reply_tokens: tuple[int, int] = (20, 60)
    seed: int | None = None
    # None accepts any key (the default); a key makes /v1/* answer 401 to any other.
    api_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_preset(cls, preset: str = DEFAULT_PRESET, **changes: Any) -> Settings:
        return cls().updated({"preset": preset, **changes})

    def updated(self, changes: Mapping[str, Any]) -> Settings:
        """Return these settings with `changes` applied, validated."""
        unknown = set(changes) - set(_SETTERS)
        if unknown:
            raise SettingsError(
                f"unknown setting(s) {', '.join(sorted(unknown))}; "
                f"the settings are {', '.join(sorted(_SETTERS))}"
            )
        settings = self
        # The preset resets the latency, so it goes first and the other keys refine it.
        for key in sorted(changes, key=lambda k: k != "preset"):
            try:
                settings = _SETTERS[key](settings, changes[key])
            except (LatencyError, FaultError) as error:
                raise SettingsError(str(error)) from None
        return settings

    def accepts(self, model: str) -> bool:
        return "*" in self.models or model in self.models

    def to_json(self) -> dict[str, Any]:
        """The settings as `updated()` keys; `api_key` is write-only and never shown."""
        latency = self.latency
        return {
            "preset": self.preset,
            "latency_s": latency.total_s,
            "ttft_s": latency.ttft.to_json(),
            "per_token_s": latency.per_token.to_json(),
            "outlier_rate": latency.outlier_rate,
            "outlier_factor": latency.outlier_factor,
            "connect_delay_s": self.connect_delay_s,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "rate_window_s": self.rate_window_s,
            "faults": dict(self.faults),
            "fault": self.fault,
            "hang_s": self.hang_s,
            "models": list(self.models),
            "reply_tokens": list(self.reply_tokens),
            "seed": self.seed,
        }


def _seconds(name: str, value: object, *, positive: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        need = "> 0" if positive else ">= 0"
        raise SettingsError(f"{name}={value!r} must be a number of seconds {need}")
    return float(value)  # type: ignore[arg-type]


def _limit(name: str, value: object) -> int | None:
    if value is None or value == 0:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingsError(f"{name}={value!r} must be a whole number > 0, or 0/null for no limit")
    return value


def _preset(settings: Settings, value: object) -> Settings:
    if value not in PRESETS:
        raise SettingsError(f"preset={value!r} is not a preset; choose one of {', '.join(PRESETS)}")
    preset = PRESETS[str(value)]
    return replace(
        settings, preset=str(value), latency=preset.latency, connect_delay_s=preset.connect_delay_s
    )


def _latency(settings: Settings, value: object) -> Settings:
    total = None if value is None else _seconds("latency_s", value)
    return replace(settings, latency=replace(settings.latency, total_s=total))


def _distribution(attribute: str, key: str):
    def setter(settings: Settings, value: object) -> Settings:
        # Setting a part of the model means the caller wants that model, not a fixed total.
        model = replace(
            settings.latency, total_s=None, **{attribute: Distribution.parse(value, key)}
        )
        return replace(settings, latency=model)

    return setter


def _outlier(attribute: str):
    def setter(settings: Settings, value: object) -> Settings:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{attribute}={value!r} must be a number")
        number = float(value)  # LatencyModel checks the range and says which it needs
        return replace(settings, latency=replace(settings.latency, **{attribute: number}))

    return setter


def _models(settings: Settings, value: object) -> Settings:
    if isinstance(value, str):
        value = [name.strip() for name in value.split(",")]
    if (
        not isinstance(value, list | tuple)
        or not value
        or not all(isinstance(name, str) and name for name in value)
    ):
        raise SettingsError(f"models={value!r} must be a non-empty list of model names ('*': any)")
    return replace(settings, models=tuple(value))


def _reply_tokens(settings: Settings, value: object) -> Settings:
    pair = [value, value] if isinstance(value, int) else value
    if (
        not isinstance(pair, list | tuple)
        or len(pair) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in pair)
        or not 1 <= pair[0] <= pair[1] <= 100_000
    ):
        raise SettingsError(
            f"reply_tokens={value!r} must be a length or [min, max], 1 <= min <= max"
        )
    return replace(settings, reply_tokens=(pair[0], pair[1]))


def _api_key(settings: Settings, value: object) -> Settings:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise SettingsError("api_key must be a non-empty string, or null to accept any key")
    return replace(settings, api_key=value)


def _seed(settings: Settings, value: object) -> Settings:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingsError(f"seed={value!r} must be a whole number or null")
    return replace(settings, seed=value)


_SETTERS = {
    "preset": _preset,
    "latency_s": _latency,
    "ttft_s": _distribution("ttft", "ttft_s"),
    "per_token_s": _distribution("per_token", "per_token_s"),
    "outlier_rate": _outlier("outlier_rate"),
    "outlier_factor": _outlier("outlier_factor"),
    "connect_delay_s": lambda s, v: replace(s, connect_delay_s=_seconds("connect_delay_s", v)),
    "rpm": lambda s, v: replace(s, rpm=_limit("rpm", v)),
    "tpm": lambda s, v: replace(s, tpm=_limit("tpm", v)),
    "rate_window_s": lambda s, v: replace(
        s, rate_window_s=_seconds("rate_window_s", v, positive=True)
    ),
    "faults": lambda s, v: replace(s, faults=parse_rates(v)),
    "fault": lambda s, v: replace(s, fault=None if v is None else parse_kind(v)),
    "hang_s": lambda s, v: replace(s, hang_s=_seconds("hang_s", v)),
    "models": _models,
    "reply_tokens": _reply_tokens,
    "seed": _seed,
    "api_key": _api_key,
}
