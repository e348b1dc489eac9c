"""Run directories (`runs/NAME/`): what a search writes as it goes, so it can be repeated, resumed and read.

    config.yaml    everything needed to repeat the run (hwnas.config.SearchConfig)
    history.csv    one row per finished epoch: losses, accuracies, expected latency, temperature, ...
    supernet.pt    resumable checkpoint after every epoch (weights, architecture parameters, optimizer states,
                   epoch, RNG states), replaced atomically so a kill never leaves half a file
    arch.json      the derived architecture (`Arch.save(path, device=..., space=..., strategy=..., budget_ms=...,
                   predicted_ms=...)`)
    search.json    summary: budget, derivation (repaired or not), timings, world size
    arch_weights.png, latency.png   plots at the end
    trained.pt, train.json          written by `hwnas train runs/NAME`
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hwnas.config import SearchConfig, load_config, save_config
from hwnas.errors import HwnasError

CONFIG, HISTORY, CHECKPOINT, ARCH, SUMMARY = "config.yaml", "history.csv", "supernet.pt", "arch.json", "search.json"
TRAINED, TRAIN_REPORT = "trained.pt", "train.json"


class RunDir:
    """One run's folder and the files in it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def has_checkpoint(self) -> bool:
        return self.file(CHECKPOINT).exists()

    def create(self, config: SearchConfig, resume: bool) -> None:
        """Make the folder and write config.yaml; refuse to overwrite a search unless resuming it."""
        if self.has_checkpoint and not resume:
            raise HwnasError(f"{self.path} already holds a search; pass --resume to continue it, or choose another "
                             "--out")
        self.path.mkdir(parents=True, exist_ok=True)
        save_config(config, self.file(CONFIG))

    def config(self) -> SearchConfig:
        if not self.file(CONFIG).exists():
            raise HwnasError(f"{self.path}: no {CONFIG} here; is this a run directory written by `hwnas search`?")
        return load_config(self.file(CONFIG))

    # -- history ------------------------------------------------------------------------------------------
    def history(self) -> list[dict[str, Any]]:
        """Rows of history.csv with numbers parsed."""
        path = self.file(HISTORY)
        if not path.exists():
            return []
        rows = []
        for row in csv.DictReader(io.StringIO(path.read_text())):
            rows.append({k: _number(v) for k, v in row.items()})
        return rows

    def append_history(self, row: Mapping[str, Any]) -> None:
        """Append one epoch (flushed to disk); the header comes from the first row."""
        path = self.file(HISTORY)
        new = not path.exists() or path.stat().st_size == 0
        columns = list(row) if new else next(csv.reader(io.StringIO(path.read_text())))
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: _cell(row.get(k, "")) for k in columns})
            handle.flush()
            os.fsync(handle.fileno())

    def write_history(self, rows: list[Mapping[str, Any]]) -> None:
        """Replace history.csv by `rows` (a resumed run restores the rows its checkpoint holds)."""
        path = self.file(HISTORY)
        if path.exists():
            path.unlink()
        for row in rows:
            self.append_history(row)

    # -- checkpoint ---------------------------------------------------------------------------------------
    def save_checkpoint(self, state: Mapping[str, Any]) -> None:
        """Write supernet.pt atomically (temporary file, fsync, rename)."""
        target = self.file(CHECKPOINT)
        temporary = target.with_suffix(".pt.tmp")
        with temporary.open("wb") as handle:
            torch.save(dict(state), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)

    def load_checkpoint(self) -> dict[str, Any]:
        if not self.has_checkpoint:
            raise HwnasError(f"{self.path}: nothing to resume (no {CHECKPOINT}); run without --resume")
        try:
            return torch.load(self.file(CHECKPOINT), map_location="cpu", weights_only=False)
        except (RuntimeError, EOFError, OSError) as error:
            raise HwnasError(f"{self.file(CHECKPOINT)}: cannot read the checkpoint ({error})") from None

    # -- results ------------------------------------------------------------------------------------------
    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        temporary = self.file(name + ".tmp")
        temporary.write_text(json.dumps(dict(data), indent=2, default=str) + "\n")
        os.replace(temporary, self.file(name))

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        if not path.exists():
            raise HwnasError(f"{path}: missing; has the search in {self.path} finished?")
        return json.loads(path.read_text())


def _cell(value: Any) -> Any:
    return f"{value:.6g}" if isinstance(value, float) else value


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text
