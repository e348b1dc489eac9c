"""`export.json`: what was exported (file hashes, sizes, formats, opsets and versions), how close each file is to
PyTorch, and the network's predicted and measured latency. Rewritten after every artifact, so an interrupted
export keeps what it finished, and a rerun with the same inputs reuses each file whose hash still matches.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hwnas.errors import HwnasError

REPORT_FILE = "export.json"
SCHEMA_VERSION = 1


def file_facts(path: Path, root: Path) -> dict[str, Any]:
    """Path relative to the export folder, SHA-256 (packages hashed file by file) and size in bytes."""
    from hwnas.profilers.base import file_digest

    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return {"file": str(path.relative_to(root)) if path.is_relative_to(root) else str(path),
            "sha256": file_digest(path), "bytes": sum(f.stat().st_size for f in files)}


def inputs_key(inputs: dict[str, Any]) -> str:
    """Hash of everything that decides the files' content: a rerun with the same key may reuse them."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ExportReport:
    """The export.json of one export folder, written as it grows."""

    def __init__(self, folder: Path, header: dict[str, Any], previous: dict[str, Any] | None = None):
        self.folder = folder
        self.path = folder / REPORT_FILE
        self.data: dict[str, Any] = {"schema_version": SCHEMA_VERSION,
                                     "created": datetime.now(UTC).isoformat(timespec="seconds"),
                                     **header, "artifacts": [], "latency": {"predicted": [], "measured": None}}
        self._previous = {(a["format"], a["precision"]): a for a in (previous or {}).get("artifacts", [])
                          if a.get("status") == "ok"}

    @classmethod
    def open(cls, folder: Path, header: dict[str, Any], fresh: bool = False) -> ExportReport:
        """A new report for `folder`; finished artifacts of an earlier export with the same key can be reused."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / REPORT_FILE
        previous = None
        if path.exists() and not fresh:
            try:
                previous = json.loads(path.read_text())
            except json.JSONDecodeError:
                previous = None  # a report cut short is redone
            if previous is not None and previous.get("key") != header.get("key"):
                previous = None
        return cls(folder, header, previous)

    def reusable(self, export_format: str, precision: str) -> dict[str, Any] | None:
        """The earlier entry for this artifact when its file is still there, byte for byte."""
        entry = self._previous.get((export_format, precision))
        if entry is None:
            return None
        path = self.folder / entry["file"]
        if not path.exists() or file_facts(path, self.folder)["sha256"] != entry["sha256"]:
            return None
        return {**entry, "reused": True}

    def add_artifact(self, entry: dict[str, Any]) -> None:
        artifacts = [a for a in self.data["artifacts"]
                     if (a["format"], a["precision"]) != (entry["format"], entry["precision"])]
        self.data["artifacts"] = [*artifacts, entry]
        self.write()

    def set_latency(self, kind: str, value: Any) -> None:
        self.data["latency"][kind] = value
        self.write()

    def write(self) -> None:
        """Atomically: a crash leaves the old report or the new one, never half of one."""
        temporary = self.path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(self.data, indent=2, default=str) + "\n")
        os.replace(temporary, self.path)

    def failures(self) -> tuple[list[str], list[str]]:
        """Lines for artifacts whose checks failed: (errors, warnings).

        A reduced precision off by more than its tolerance on an untrained network is a warning, since random
        networks amplify rounding far more than trained ones; fp32 misses and conversion errors never are.
        """
        errors, warnings = [], []
        for entry in self.data["artifacts"]:
            parity = entry.get("parity") or {}
            missed = parity.get("passed") is False
            converted_badly = parity.get("conversion_passed") is False
            if not (missed or converted_badly):
                continue
            parts = []
            if missed:
                parts.append(f"relative error {parity['relative_error']:.1e} exceeds {parity['tolerance']:.0e}")
            if parity.get("floor_error") is not None:
                parts.append(f"PyTorch with the same {entry['precision']} weights is off by "
                             f"{parity['floor_error']:.1e} itself, the conversion adds "
                             f"{parity['conversion_error']:.1e}")
            line = f"{entry['file']} ({entry['precision']}): " + ", ".join(parts)
            soft = missed and not converted_badly and not self.data.get("trained") and entry["precision"] != "fp32"
            (warnings if soft else errors).append(line)
        return errors, warnings


def load_report(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / REPORT_FILE
    if not path.exists():
        raise HwnasError(f"{path}: no export report here")
    return json.loads(path.read_text())
