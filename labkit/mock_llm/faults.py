"""Injected faults: which can happen, how often, and which one a call gets.

- `500`, `503`: an OpenAI-shaped server error (the SDK retries these by default).
- `hang`: the call sits for `hang_s` before answering, so client timeouts fire first.
- `cut`: the body stops half way and the TCP connection is dropped, as when a proxy dies.
- `malformed`: a 200 whose JSON (or one stream event) is cut off and cannot be parsed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

FAULT_KINDS: tuple[str, ...] = ("500", "503", "hang", "cut", "malformed")


class FaultError(ValueError):
    """A fault setting that cannot be used, with the reason in the message."""


class StreamCut(Exception):
    """Raised after a partial body to drop the connection; the server does not log it."""


def parse_kind(value: object, name: str = "fault") -> str | None:
    """Read a forced fault: one of FAULT_KINDS, or 'none'/'' for no fault."""
    text = str(value).strip().lower()
    if text in ("", "none"):
        return None
    if text not in FAULT_KINDS:
        raise FaultError(
            f"{name}={value!r} is not a fault; choose one of {', '.join(FAULT_KINDS)}, none"
        )
    return text


def parse_rates(value: object, name: str = "faults") -> dict[str, float]:
    """Read `{kind: probability}`, e.g. `{"503": 0.1, "hang": 0.02}`; the sum must be <= 1."""
    if not isinstance(value, Mapping):
        raise FaultError(
            f"{name} must be an object of fault kind to probability, like {{'503': 0.1}}"
        )
    rates: dict[str, float] = {}
    for kind, rate in value.items():
        label = parse_kind(kind, name=f"{name} key")
        if label is None:
            continue
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
            raise FaultError(f"{name}[{kind!r}]={rate!r} must be a probability between 0 and 1")
        if rate:
            rates[label] = float(rate)
    if sum(rates.values()) > 1 + 1e-9:
        raise FaultError(f"{name} add up to {sum(rates.values()):g}; at most 1 in total")
    return rates


def parse_rate_option(text: str) -> tuple[str, float]:
    """Read one `KIND=RATE` command-line value, e.g. `503=0.1`."""
    kind, sep, rate = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        value = math.nan
    if not sep or not math.isfinite(value):
        raise FaultError(f"--fault {text!r}: expected KIND=RATE, e.g. 503=0.1 or hang=0.05")
    label = parse_kind(kind, name="--fault")
    if label is None:
        raise FaultError(f"--fault {text!r}: 'none' takes no rate")
    return label, value


def choose(rates: Mapping[str, float], rng: random.Random) -> str | None:
    """Draw the fault for one call, or None; one draw whatever the number of kinds."""
    if not rates:
        return None
    draw = rng.random()
    for kind in FAULT_KINDS:
        draw -= rates.get(kind, 0.0)
        if draw < 0:
            return kind
    return None
