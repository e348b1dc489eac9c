"""A latency table on disk: rows appended (and flushed) as they are measured, so an interrupted run loses nothing."""

from __future__ import annotations

import csv
import json
import math
import os
import platform
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwnas.blocks import BlockSpec
from hwnas.config import DEFAULT_LUT_DIR
from hwnas.errors import ConfigError, HwnasError, MissingLatencyError
from hwnas.files import exclusive, write_atomically
from hwnas.lut.reader import check_meta, meta_path, read_meta, read_rows
from hwnas.lut.schema import COLUMNS, SCHEMA_VERSION, UNIT
from hwnas.profilers.base import Timing


class LatencyTable:
    """Rows of measured blocks plus meta (schema version, unit, device fingerprint, calibration)."""

    def __init__(self, path: Path, frame: pd.DataFrame, meta: dict[str, Any], setup: dict[str, Any] | None = None):
        self.path = path
        self.frame = frame
        self.meta = meta
        self._setup = setup or {}  # the setup new rows are measured on; differs from `meta` only when forced
        self._p50 = dict(zip(frame["key"], frame["p50_ms"].astype(float)))  # later rows win
        self._fingerprint = dict(zip(frame["key"], frame["fingerprint"]))
        self.duplicates = len(frame) - len(self._p50)  # rows of keys measured again (a retime, a second profile)

    @property
    def writer_meta(self) -> dict[str, Any]:
        return {**self.meta, **self._setup}

    # -- opening ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path) -> LatencyTable:
        """An existing table, checked row by row; a one-line error naming file, line and column when it is not."""
        path = Path(path)
        if not path.is_file():
            raise HwnasError(f"{path}: no latency table here; build it with `hwnas profile --device NAME`")
        meta = read_meta(path)
        return cls(path, read_rows(path), meta)

    @classmethod
    def open(cls, path: str | Path, meta: dict[str, Any], force: bool = False) -> LatencyTable:
        """Open for appending, creating the table when absent. An existing table must share the fingerprint."""
        path = Path(path)
        with table_lock(path):
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                full = {"schema_version": SCHEMA_VERSION, "unit": UNIT, "calibration": None, **meta}
                write_atomically(meta_path(path), meta_text(full))
                write_atomically(path, ",".join(COLUMNS) + "\n")
                return cls(path, read_rows(path), full)
            table = cls.load(path)
            if table.meta.get("fingerprint_id") != meta.get("fingerprint_id") and not force:
                raise HwnasError(
                    f"{path} was measured on a different setup ({_describe(table.meta.get('fingerprint', {}))}) "
                    f"than this one ({_describe(meta.get('fingerprint', {}))}); use another --lut or --force")
            table._truncate_partial_line()
            table._setup = dict(meta)
            return table

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
        if not (math.isfinite(timing.median) and timing.median > 0):
            raise HwnasError(f"{self.path}: the runtime timed {spec.key} at {timing.median!r} ms; a latency must be "
                             "a positive number (row not written)")
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
        try:
            with self.path.open("a", newline="") as handle:
                csv.writer(handle).writerow([_cell(row[c]) for c in COLUMNS])
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise HwnasError(f"{self.path}: cannot append the row of {spec.key} ({error.strerror or error}); the "
                             f"{len(self.frame)} rows before it are kept: free the space and run the same command to "
                             "resume") from None
        self.frame = pd.concat([self.frame, pd.DataFrame([row])], ignore_index=True)
        if spec.key in self._p50:
            self.duplicates += 1
        self._p50[spec.key] = row["p50_ms"]
        self._fingerprint[spec.key] = row["fingerprint"]

    def update_meta(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply `change` to meta.json as it is on disk now, under the table's lock, and write it atomically: a
        calibration and a profile of the same table never overwrite each other's fields."""
        with table_lock(self.path):
            meta = read_meta(self.path)
            change(meta)
            text = meta_text(meta)
            meta = json.loads(text)  # as the file will hold it
            check_meta(meta_path(self.path), meta)
            write_atomically(meta_path(self.path), text)
        self.meta = meta

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

    def require(self, keys: Iterable[str], profile_command: str) -> None:
        """One line naming the blocks the table lacks and the command that measures them."""
        missing = self.missing(keys)
        if missing:
            raise MissingLatencyError(str(self.path), missing, profile_command)

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


@contextmanager
def table_lock(path: str | Path) -> Iterator[None]:
    """Hold the table's lock (`TABLE.csv.lock`) for the block: one process at a time writes a table."""
    with exclusive(path, str(path), "pass another --lut"):
        yield


def meta_text(meta: dict[str, Any]) -> str:
    """meta.json as strict JSON: a value that is not a finite number is written as null."""
    return json.dumps(_finite(meta), indent=2, allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


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


def default_lut_path(device_name: str, lut_dir: str | Path = DEFAULT_LUT_DIR) -> Path:
    """Where `hwnas profile --device NAME` writes unless told otherwise."""
    if not device_name or "/" in device_name:
        raise ConfigError(f"device name '{device_name}' cannot name a LUT file")
    return Path(lut_dir) / f"{device_name}.csv"
