"""A latency table on disk: rows appended (and flushed) as they are measured, so an interrupted run loses nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import platform
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.blocks import BlockSpec
from hwnas.errors import ConfigError, HwnasError, MissingLatencyError
from hwnas.lut.schema import COLUMNS, REQUIRED, SCHEMA_VERSION, STAT_COLUMNS, UNIT
from hwnas.profilers.base import Timing


def meta_path(csv_path: Path) -> Path:
    return csv_path.with_suffix(".meta.json")


class LatencyTable:
    """Rows of measured blocks plus meta (schema version, unit, device fingerprint, calibration)."""

    def __init__(self, path: Path, frame: pd.DataFrame, meta: dict[str, Any]):
        self.path = path
        self.frame = frame
        self.meta = meta
        self.writer_meta = meta  # the setup new rows are measured on; differs from `meta` only when forced
        self._p50 = dict(zip(frame["key"], frame["p50_ms"].astype(float)))  # later rows win
        self._fingerprint = dict(zip(frame["key"], frame["fingerprint"]))

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """An existing table; a one-line error when it is missing or not a hwnas LUT."""
        path = Path(path)
        if not path.exists():
            raise HwnasError(f"{path}: no latency table here; build it with `hwnas profile --device NAME`")
        meta = cls._read_meta(path)
        return cls(path, cls._read_rows(path), meta)

    @classmethod
    def open(cls, path: str | Path, meta: dict[str, Any], force: bool = False) -> LatencyTable:
        """Open for appending, creating the table when absent. An existing table must share the fingerprint."""
        path = Path(path)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS)
            full = {"schema_version": SCHEMA_VERSION, "unit": UNIT, "calibration": None, **meta}
            meta_path(path).write_text(json.dumps(full, indent=2) + "\n")
            return cls(path, cls._read_rows(path), full)
        table = cls.load(path)
        if table.meta.get("fingerprint_id") != meta.get("fingerprint_id") and not force:
            raise HwnasError(
                f"{path} was measured on a different setup ({_describe(table.meta.get('fingerprint', {}))}) "
                f"than this one ({_describe(meta.get('fingerprint', {}))}); use another --lut or --force")
        table._truncate_partial_line()
        table.writer_meta = {**table.meta, **meta}
        return table

    @staticmethod
    def _read_meta(path: Path) -> dict[str, Any]:
        try:
            meta = json.loads(meta_path(path).read_text())
        except FileNotFoundError:
            raise HwnasError(f"{meta_path(path)}: missing; every LUT CSV has its meta.json beside it") from None
        except json.JSONDecodeError as error:
            raise HwnasError(f"{meta_path(path)}: not valid JSON ({error.msg} at line {error.lineno})") from None
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise HwnasError(f"{meta_path(path)}: schema_version {meta.get('schema_version')!r}, this hwnas "
                             f"reads {SCHEMA_VERSION}")
        if meta.get("unit") != UNIT:
            raise HwnasError(f"{meta_path(path)}: unit {meta.get('unit')!r}, expected '{UNIT}'")
        return meta

    @staticmethod
    def _read_rows(path: Path) -> pd.DataFrame:
        text = path.read_text()
        if not text.strip():
            raise HwnasError(f"{path}: empty file, expected a LUT header ({', '.join(COLUMNS[:4])}, ...)")
        complete = text[: text.rfind("\n") + 1] or text  # a line cut short by a kill has no newline yet
        frame = pd.read_csv(io.StringIO(complete), dtype={"act": str, "note": str}, keep_default_na=False,
                            na_values={c: [""] for c in STAT_COLUMNS})
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise HwnasError(f"{path}: not a hwnas LUT, missing column(s) {', '.join(missing)}")
        return frame[frame[REQUIRED].notna().all(axis=1)].reset_index(drop=True)

    def _truncate_partial_line(self) -> None:
        with self.path.open("rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)

    # -- writing ------------------------------------------------------------------------------------------
    def append(self, spec: BlockSpec, timing: Timing, *, method: str = "isolated", note: str = "") -> None:
        """Write one measured row to disk now (flushed and synced), and to the in-memory view."""
        fingerprint = self.writer_meta["fingerprint"]
        timing = timing.per_image(int(fingerprint.get("batch", 1)))
        row = {**spec.to_row(),
               "p10_ms": timing.p10, "p50_ms": timing.median, "p90_ms": timing.p90, "mean_ms": timing.mean,
               "std_ms": timing.std, "n": timing.n, "rel_ci": timing.rel_ci,
               "device": self.writer_meta.get("device", ""), "runtime": fingerprint.get("runtime", ""),
               "runtime_version": fingerprint.get("runtime_version", ""),
               "precision": fingerprint.get("precision", ""), "batch": fingerprint.get("batch", 1),
               "threads": fingerprint.get("threads", ""), "fingerprint": self.writer_meta["fingerprint_id"],
               "host": platform.node(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
               "method": method, "note": note}
        row = {c: _as_written(value) for c, value in row.items()}
        with self.path.open("a", newline="") as handle:
            csv.writer(handle).writerow([_cell(row[c]) for c in COLUMNS])
            handle.flush()
            os.fsync(handle.fileno())
        self.frame = pd.concat([self.frame, pd.DataFrame([row])], ignore_index=True)
        self._p50[spec.key] = row["p50_ms"]
        self._fingerprint[spec.key] = row["fingerprint"]

    def save_meta(self) -> None:
        meta_path(self.path).write_text(json.dumps(self.meta, indent=2) + "\n")

    # -- reading ------------------------------------------------------------------------------------------
    @property
    def keys(self) -> set[str]:
        return set(self._p50)

    def __contains__(self, key: str) -> bool:
        return key in self._p50

    def __len__(self) -> int:
        return len(self._p50)

    def missing(self, keys: Iterable[str]) -> list[str]:
        return list(dict.fromkeys(k for k in keys if k not in self._p50))

    def latencies(self, keys: Iterable[str], force: bool = False) -> np.ndarray:
        """Median latency (ms per image) of each key; all keys must be measured on this table's setup."""
        keys = list(keys)
        missing = self.missing(keys)
        if missing:
            raise MissingLatencyError(str(self.path), missing)
        foreign = sorted({k for k in keys if self._fingerprint[k] != self.meta["fingerprint_id"]})
        if foreign and not force:
            raise HwnasError(f"{self.path}: {len(foreign)} row(s) come from another setup (fingerprint "
                             f"{self._fingerprint[foreign[0]]}, e.g. {foreign[0]}); mixing them needs --force")
        return np.array([self._p50[k] for k in keys], dtype=float)

    def latency(self, key: str, force: bool = False) -> float:
        return float(self.latencies([key], force)[0])

    def p10(self, key: str) -> float:
        """The 10th percentile of a measured key's per-call time (ms per image), from its latest row."""
        if key not in self:
            raise MissingLatencyError(str(self.path), [key])
        return float(self.frame.loc[self.frame["key"] == key, "p10_ms"].iloc[-1])


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _as_written(value: Any) -> Any:
    """`value` as the file will hold it, so that a table just measured and the same table read back later give
    the same latencies (and the same budgets, derivations and run names)."""
    return float(_cell(value)) if isinstance(value, float) else value


def _describe(fingerprint: dict[str, Any]) -> str:
    parts = [fingerprint.get("cpu") or fingerprint.get("gpu"), fingerprint.get("runtime"),
             fingerprint.get("runtime_version"), fingerprint.get("precision"),
             f"{fingerprint.get('threads')} thread(s)" if fingerprint.get("threads") else None]
    return ", ".join(str(p) for p in parts if p)


def default_lut_path(device_name: str, lut_dir: str | Path = "luts") -> Path:
    """Where `hwnas profile --device NAME` writes unless told otherwise."""
    if not device_name or "/" in device_name:
        raise ConfigError(f"device name '{device_name}' cannot name a LUT file")
    return Path(lut_dir) / f"{device_name}.csv"
