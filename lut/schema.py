"""The LUT schema: one CSV row per (device fingerprint, block key), and a meta.json beside the CSV.

Unit: every `*_ms` column is milliseconds per image (a batch-B measurement is divided by B). The unit is stated
in meta.json and in the column names, never implied.
"""

from __future__ import annotations

from dataclasses import fields

from hwnas.blocks import Op

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
