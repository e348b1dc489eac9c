"""The LUT schema: one CSV row per (device fingerprint, block key), and a meta.json beside the CSV.

Unit: every `*_ms` column is milliseconds per image (a batch-B measurement is divided by B). The unit is stated
in meta.json and in the column names, never implied.
"""

from __future__ import annotations

from dataclasses import fields

from hwnas.blocks import Op
from hwnas.units import is_decimal

SCHEMA_VERSION = 1
UNIT = "milliseconds per image"

SPEC_COLUMNS = ["key", *(f.name for f in fields(Op)), "cin", "cout", "h", "w", "stride"]
STAT_COLUMNS = ["p10_ms", "p50_ms", "p90_ms", "mean_ms", "std_ms", "n", "rel_ci"]
PROVENANCE_COLUMNS = ["device", "runtime", "runtime_version", "precision", "batch", "threads", "fingerprint",
                      "host", "date", "method", "note"]
COLUMNS = SPEC_COLUMNS + STAT_COLUMNS + PROVENANCE_COLUMNS
REQUIRED = ["key", "p50_ms", "fingerprint"]

# A block is timed alone ('isolated') or inside its neighbours minus the neighbours ('in_context').
METHODS = ("isolated", "in_context")

# What each column may hold; the table reader refuses anything else with the file, line and column.
POSITIVE_INTEGERS = ("dilation", "groups", "cin", "cout", "h", "w", "stride", "batch")
COUNTS = ("kernel", "hidden")  # integers >= 0 (0: the block has none)
SHARES = ("expansion", "se")  # finite numbers >= 0
TIMES = ("p10_ms", "p90_ms", "mean_ms")  # finite > 0 ms, or empty / nan where the runtime does not report them
SPREADS = ("std_ms", "rel_ci")  # finite >= 0, or empty / nan
OPTIONAL_COUNTS = ("n", "threads")  # integers, or empty
MAX_MS = 1e6  # no block takes 1000 s per image: a larger figure is a damaged row, and sums of it overflow
MAX_SCALE = 100.0  # a calibration multiplies block sums by at most this much
META_REQUIRED = {"schema_version": int, "unit": str, "device": str, "fingerprint": dict, "fingerprint_id": str}


def calibration_key(space: str, resolution: int) -> str:
    """Where meta.json keeps the fit made on networks of `space` at `resolution` (e.g. 'fbnet@224')."""
    return f"{space}@{int(resolution)}"


def parse_calibration_key(key: str) -> tuple[str, int] | None:
    """(space, resolution) of a key, or None for a key of the old per-resolution form ('224'): such a fit does not
    say which networks it was made on, so it is never applied."""
    space, _, resolution = key.rpartition("@")
    return (space, int(resolution)) if space and is_decimal(resolution) else None
