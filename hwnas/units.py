"""Durations as users write them (`20ms`, `0.02s`, `20000us`) and latency budgets (a duration or `50%` of a range)."""

from __future__ import annotations

import math
import re

from hwnas.errors import ConfigError

_MS_PER_UNIT = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}
_DURATION_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|s|us|µs)\s*$")
_PERCENT_RE = re.compile(r"^\s*(?P<value>[0-9]*\.?[0-9]+)\s*%\s*$")


def parse_duration_ms(text: str, what: str = "duration") -> float:
    """`20ms` / `0.02s` / `20000us` -> 20.0 (milliseconds). A bare number is refused: the unit is never implied."""
    match = _DURATION_RE.match(str(text))
    if not match:
        raise ConfigError(f"{what} '{text}': expected a number with a unit, e.g. 20ms, 0.02s or 20000us")
    value = float(match["value"]) * _MS_PER_UNIT[match["unit"]]
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{what} '{text}': must be a positive duration")
    return value


def format_ms(value_ms: float) -> str:
    """A latency for people: `0.412ms`, `12.3ms`, `1.25s`."""
    if value_ms >= 1000:
        return f"{value_ms / 1000:.3g}s"
    return f"{value_ms:.3g}ms"


def is_relative_budget(text: str) -> bool:
    return bool(_PERCENT_RE.match(str(text)))


def resolve_budget_ms(text: str, range_ms: tuple[float, float], what: str = "--latency-budget") -> float:
    """A budget in milliseconds. `50%` means halfway between the space's fastest and slowest architecture.

    A duration outside the feasible range is refused with the range in the message.
    """
    low, high = range_ms
    relative = _PERCENT_RE.match(str(text))
    if relative:
        share = float(relative["value"]) / 100
        if not 0 <= share <= 1:
            raise ConfigError(f"{what} '{text}': a relative budget must lie in 0%..100% of the feasible range "
                              f"{format_ms(low)}..{format_ms(high)}")
        return low + share * (high - low)
    budget = parse_duration_ms(text, what)
    if budget < low or budget > high:
        raise ConfigError(f"{what} {text} is outside this space's feasible range on the device: "
                          f"{format_ms(low)}..{format_ms(high)} (fastest..slowest architecture; or give a share "
                          "of the range, e.g. 50%)")
    return budget
