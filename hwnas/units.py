"""Values as users write them: durations (`20ms`, `0.02s`, `20000us`), latency budgets (a duration or `50%` of a
range), and the bounds every size must respect where it enters (architecture strings, arch.json, flags, devices.yaml).

This module imports no torch, so the CLI checks its flags with it without slowing `hwnas --help`.
"""

from __future__ import annotations

import math
import re
import reprlib
from numbers import Integral

from hwnas.errors import ConfigError

# Bounds of the sizes users write, generous for real vision models; beyond them a value is a typo or a mistake
# that would ask torch for terabytes or build millions of blocks.
MAX_RESOLUTION = 4096  # input side in pixels
MAX_CHANNELS = 32768  # channels of any block, classifier outputs included (ImageNet-21k has 21,843 classes)
MAX_REPEATS = 64  # repeats of one architecture-string row
MAX_CELLS = 100  # cells of a cell network (DARTS evaluates 20)
MAX_KERNEL = 31  # kernel side (odd: same padding); RepLKNet's largest
MAX_STRIDE = 32  # stride of one block (ViT-style patch stems use 16 or 32)
MAX_DILATION = 32  # dilation of one block (DeepLab's atrous rates reach 24)
MIN_EXPANSION, MAX_EXPANSION = 0.125, 16.0  # inverted-residual expansion ratio
MAX_THREADS = 1024  # runtime threads of a device
MAX_BATCH = 4096  # images per inference of a device

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


def check_range(value: object, what: str, low: float, high: float | None = None, kind: type = Integral) -> float:
    """`value` when it is a `kind` of number (Integral or Real; a bool is none) in low..high (no upper bound when
    `high` is None), else a ConfigError naming `what`, the value and the bounds."""
    if (isinstance(value, bool) or not isinstance(value, kind) or not low <= value
            or (high is not None and not value <= high)):
        bounds = f">= {_format_bound(low)}" if high is None else f"in {_format_bound(low)}..{_format_bound(high)}"
        number = "a whole number" if kind is Integral else "a number"
        raise ConfigError(f"{what} is {shown(value)}, expected {number} {bounds}")
    return value


def check_resolution(value: int | None, what: str = "resolution") -> int | None:
    """An input resolution in 1..MAX_RESOLUTION pixels, for flags and config files that set one (None: not set)."""
    return None if value is None else int(check_range(value, what, 1, MAX_RESOLUTION))


def check_classes(value: int | None, what: str = "classes") -> int | None:
    """A classifier width in 1..MAX_CHANNELS, for flags and config files that set one (None: not set)."""
    return None if value is None else int(check_range(value, what, 1, MAX_CHANNELS))


def is_decimal(text: str) -> bool:
    """Whether `text` is one or more ASCII digits (`str.isdigit` alone also accepts '²', which `int` refuses)."""
    return text.isascii() and text.isdigit()


def parse_int(text: str, what: str, low: int, high: int) -> int:
    """A decimal integer in low..high from user text (ASCII digits only), else a ConfigError naming it."""
    if not is_decimal(text):
        raise ConfigError(f"{what} is {shown(text)}, expected a whole number in {low}..{high}")
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(high)):  # too large, and maybe past what int() reads
        raise ConfigError(f"{what} is {digits[:20]}{'...' if len(digits) > 20 else ''}, expected a whole number "
                          f"in {low}..{high}")
    return int(check_range(int(digits), what, low, high))


def shown(value: object) -> str:
    """A value for a one-line message: a short repr (reprlib), or the size of a number too long to print."""
    try:
        return reprlib.repr(value)
    except ValueError:  # an int past Python's 4300-digit limit for str()
        return f"a {value.bit_length()}-bit number" if isinstance(value, int) else f"a {type(value).__name__}"


def _format_bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Budget comparisons. BUDGET_RTOL absorbs float rounding (calibration, LP solvers): a prediction within
# budget · (1 + BUDGET_RTOL) meets the budget, and solvers aim at limits tightened by it so rounding never carries
# their answer over.
BUDGET_RTOL = 1e-9
# A margin kept on purpose, far above BUDGET_RTOL: a point placed this far inside a bound (HardCoRe's feasible
# start, the lowest budget confirmation derives under) still meets it after the solvers' own tightening, and an
# iterate of many Frank-Wolfe steps may stray this far from the bound by accumulated rounding only.
BUDGET_MARGIN = 1e-6


def within_budget(ms: float, budget_ms: float) -> bool:
    """Whether a predicted latency meets the budget, up to float rounding."""
    return ms <= budget_ms * (1 + BUDGET_RTOL)


def tight_limit(limit: float) -> float:
    """`limit` lowered by BUDGET_RTOL: the bound a solver aims at, so its answer still meets `limit` after rounding."""
    return limit * (1 - BUDGET_RTOL)
