"""Reading a LUT as untrusted input: every row and meta field checked against the schema, and every violation one
line naming the file, line and column, so a hand-edited or damaged table never yields a silently wrong latency."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from hwnas.errors import HwnasError
from hwnas.lut.schema import (
    COLUMNS,
    COUNTS,
    MAX_MS,
    MAX_SCALE,
    META_REQUIRED,
    OPTIONAL_COUNTS,
    POSITIVE_INTEGERS,
    SCHEMA_VERSION,
    SHARES,
    SPREADS,
    TIMES,
    UNIT,
    parse_calibration_key,
)
from hwnas.units import is_decimal

TEXT_COLUMNS = ("key", "kind", "act", "fingerprint")  # non-empty except act (empty: the block's default)


def meta_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


def read_meta(csv_path: Path) -> dict[str, Any]:
    """meta.json beside `csv_path`, parsed as strict JSON and checked."""
    path = meta_path(csv_path)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise HwnasError(f"{path}: missing; every LUT CSV has its meta.json beside it") from None
    except (OSError, UnicodeDecodeError) as error:
        raise HwnasError(f"{path}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    try:
        meta = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        raise HwnasError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (ValueError, RecursionError) as error:
        raise HwnasError(f"{path}: not valid JSON ({error})") from None
    check_meta(path, meta)
    return meta


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in strict JSON")


def check_meta(path: Path, meta: Any) -> None:
    """One line naming the first field of `meta` that is missing or holds the wrong kind of value."""
    if not isinstance(meta, dict):
        raise HwnasError(f"{path}: expected a JSON object with {', '.join(META_REQUIRED)}; found a "
                         f"{type(meta).__name__}")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise HwnasError(f"{path}: schema_version {meta.get('schema_version')!r}, this hwnas reads {SCHEMA_VERSION}")
    if meta.get("unit") != UNIT:
        raise HwnasError(f"{path}: unit {meta.get('unit')!r}, expected '{UNIT}'")
    for key, kind in META_REQUIRED.items():
        if not isinstance(meta.get(key), kind) or meta.get(key) in ("", {}):
            raise HwnasError(f"{path}: key '{key}' must hold a non-empty {_KIND_NAMES[kind]}, found {meta.get(key)!r}")
    for resolution, fit in _mapping(path, meta, "calibration").items():
        where = f"calibration['{resolution}']"
        parsed = parse_calibration_key(resolution)  # None: the old per-resolution form ('224')
        if not (parsed[1] >= 1 if parsed else is_decimal(resolution) and int(resolution) >= 1):
            raise HwnasError(f"{path}: {where}: key must be SPACE@RESOLUTION, e.g. 'fbnet@224' (resolution in pixels)")
        if not isinstance(fit, dict):
            raise HwnasError(f"{path}: {where} must be an object with scale and offset_ms, found {fit!r}")
        _number(path, f"{where}.scale", fit.get("scale"), 0.0, MAX_SCALE)
        _number(path, f"{where}.offset_ms", fit.get("offset_ms", 0.0), -MAX_MS, MAX_MS)
    for key, baseline in _mapping(path, meta, "references").items():
        if baseline is not None:
            _number(path, f"references['{key}']", baseline, 0.0, MAX_MS)


_KIND_NAMES = {int: "integer", str: "string", dict: "object"}


def _mapping(path: Path, meta: dict[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise HwnasError(f"{path}: key '{key}' must be an object or null, found {value!r}")
    return value


def _number(path: Path, where: str, value: Any, low: float, high: float) -> None:
    """`value` must be a number in (low, high] when low is 0, else in [low, high]."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not (value > low if low == 0 else value >= low) or value > high:
        bound = f"> 0 and <= {high:g}" if low == 0 else f"in [{low:g}, {high:g}]"
        raise HwnasError(f"{path}: {where} is {value!r}; expected a number {bound}")


def read_rows(path: Path) -> pd.DataFrame:
    """Every complete row of the CSV, typed; a line cut short by a kill (no newline yet) is left out."""
    try:
        text = path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise HwnasError(f"{path}: cannot read as a UTF-8 LUT ({getattr(error, 'strerror', None) or error})") from None
    if not text.strip():
        raise HwnasError(f"{path}: empty file, expected a LUT header ({', '.join(COLUMNS[:4])}, ...)")
    complete = text[: text.rfind("\n") + 1] or text
    lines = csv.reader(io.StringIO(complete, newline=""))
    try:
        header = next(lines)
        if header != COLUMNS:
            extra = [c for c in header if c not in COLUMNS]
            missing = [c for c in COLUMNS if c not in header]
            problem = (f"missing column(s) {', '.join(missing)}" if missing else
                       f"unknown column(s) {', '.join(extra)}" if extra else "columns out of order")
            raise HwnasError(f"{path}, line 1: not a hwnas LUT header ({problem}); expected "
                             f"{','.join(COLUMNS[:4])},...")
        rows = [_typed_row(path, lines.line_num, fields) for fields in lines if fields]
    except csv.Error as error:
        raise HwnasError(f"{path}, line {lines.line_num}: not CSV ({error})") from None
    return pd.DataFrame(rows, columns=COLUMNS)


def _typed_row(path: Path, line: int, fields: list[str]) -> dict[str, Any]:
    if len(fields) != len(COLUMNS):
        raise HwnasError(f"{path}, line {line}: {len(fields)} fields, expected {len(COLUMNS)} (one per header column)")
    row: dict[str, Any] = dict(zip(COLUMNS, fields))

    def fail(column: str, expected: str) -> HwnasError:
        return HwnasError(f"{path}, line {line}, column {column}: {row[column]!r}; expected {expected}")

    for column in TEXT_COLUMNS:
        if column != "act" and not row[column].strip():
            raise fail(column, "a non-empty value")
    for column in (*POSITIVE_INTEGERS, *COUNTS, *OPTIONAL_COUNTS):
        text = row[column].strip()
        if column in OPTIONAL_COUNTS and text == "":
            continue
        low = 1 if column in POSITIVE_INTEGERS or column == "n" else 0
        if not _is_integer(text) or int(text) < low:
            raise fail(column, f"an integer >= {low}")
        row[column] = int(text)
    for column in (*SHARES, *TIMES, *SPREADS, "p50_ms"):
        text = row[column].strip()
        if column in (*TIMES, *SPREADS) and text.lower() in ("", "nan"):
            row[column] = math.nan  # not reported by this runtime
            continue
        value = _float(text)
        positive = column in (*TIMES, "p50_ms")
        if column == "rel_ci" and value == math.inf:  # too few calls to bound the median
            row[column] = value
            continue
        if value is None or not 0 <= value <= MAX_MS or (positive and value == 0):
            raise fail(column, ("a number > 0 and" if positive else "a number >= 0 and") + f" <= {MAX_MS:g}")
        row[column] = value
    return row


def _is_integer(text: str) -> bool:
    return is_decimal(text[1:] if text[:1] in "+-" else text) and len(text) <= 12


def _float(text: str) -> float | None:
    try:
        return float(text) if len(text) <= 40 else None
    except ValueError:
        return None
