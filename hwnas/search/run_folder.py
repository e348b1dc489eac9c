"""Run directories (`runs/NAME/`): what a search writes as it goes, so it can be repeated, resumed and read.

    config.yaml    everything needed to repeat the run (hwnas.config.SearchConfig)
    history.csv    one row per finished epoch: losses, accuracies, expected latency, temperature, ...
    supernet.pt    resumable checkpoint after every epoch (weights, architecture parameters, optimizer states,
                   epoch, RNG states), replaced atomically so a kill never leaves half a file
    arch.json      the derived architecture and where it was searched, what it predicts and measured (RunRecord)
    search.json    summary: budget, derivation (repaired or not), predicted and measured latency, timings (RunRecord)
    splits.json    the data source's fingerprint and each split's size and index hash (stable across runs and ranks)
    arch_weights.png, latency.png   plots at the end
    trained.pt, train.json          written by `hwnas train runs/NAME`
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hwnas.config import SearchConfig, load_config, save_config
from hwnas.errors import HwnasError
from hwnas.files import atomic_writer, write_atomically

if TYPE_CHECKING:
    from hwnas.strategies.base import Derivation

CONFIG, HISTORY, CHECKPOINT, ARCH, SUMMARY = "config.yaml", "history.csv", "supernet.pt", "arch.json", "search.json"
SPLITS = "splits.json"  # which images each split holds (hwnas.data.split_record): equal records, equal images
TRAINED, TRAIN_REPORT = "trained.pt", "train.json"
CHECKPOINT_KEYS = ("epoch", "supernet", "strategy", "optimizer", "rng")


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
        try:
            with path.open("a", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                if new:
                    writer.writeheader()
                writer.writerow({k: _cell(row.get(k, "")) for k in columns})
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise HwnasError(f"{path}: cannot append epoch {row.get('epoch')} ({error.strerror or error}); the "
                             f"checkpoint {CHECKPOINT} holds it: free the space and resume with --resume") from None

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
        with atomic_writer(self.file(CHECKPOINT)) as handle:
            torch.save(dict(state), handle)

    def load_checkpoint(self) -> dict[str, Any]:
        """supernet.pt read as data only (`weights_only`: tensors and plain values), so a crafted file runs no code."""
        if not self.has_checkpoint:
            raise HwnasError(f"{self.path}: nothing to resume (no {CHECKPOINT}); run without --resume")
        try:
            state = torch.load(self.file(CHECKPOINT), map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable or hostile file is one user-facing line
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise HwnasError(f"{self.file(CHECKPOINT)}: cannot read the checkpoint as hwnas data ({reason[:160]}); "
                             "start the search again without --resume") from None
        missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
        if missing:
            raise HwnasError(f"{self.file(CHECKPOINT)}: not a hwnas search checkpoint (missing {', '.join(missing)})")
        return state

    # -- results ------------------------------------------------------------------------------------------
    def write_json(self, name: str, data: Mapping[str, Any]) -> None:
        write_atomically(self.file(name), json.dumps(dict(data), indent=2, default=str) + "\n")

    def read_json(self, name: str) -> dict[str, Any]:
        path = self.file(name)
        if not path.exists():
            raise HwnasError(f"{path}: missing; has the search in {self.path} finished?")
        try:
            data = json.loads(path.read_bytes().decode("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
            raise HwnasError(f"{path}: not a JSON file written by hwnas ({error})") from None
        if not isinstance(data, dict):
            raise HwnasError(f"{path}: expected a JSON object, found a {type(data).__name__}")
        return data


@dataclass(frozen=True)
class RunRecord:
    """What a finished search's arch.json and search.json say, each value held once for both files."""

    run: str
    device: str
    space: str  # as configured (a name or a space file)
    space_name: str  # the space's own name (what its calibration is keyed by)
    strategy: str
    budget: Any  # as configured (milliseconds or a share of the range)
    budget_ms: float
    range_ms: tuple[float, float]
    derivation: Derivation  # the architecture kept (confirmed on the device when asked)
    confirmation: dict[str, Any] | None  # hwnas.search.confirm.Confirmation.to_dict(); None when not confirmed
    dataset: str
    num_classes: int
    lut: str
    seed: int
    epochs: int
    world_size: int
    arch_params_identical: bool
    val_acc: float | None
    arch_confidence: float | None
    seconds: float

    def write(self, run: RunDir) -> None:
        """arch.json (the architecture plus its fields), then search.json (the summary)."""
        self.derivation.arch.save(run.file(ARCH), device=self.device, space=self.space, space_name=self.space_name,
                                  strategy=self.strategy, budget_ms=self.budget_ms, **self._derived(),
                                  dataset=self.dataset, num_classes=self.num_classes, lut=self.lut, seed=self.seed,
                                  **self._measured())
        run.write_json(SUMMARY, self.summary())

    def summary(self) -> dict[str, Any]:
        """search.json: the budget, the derivation and its measurement, and how the search ran."""
        return {"run": self.run, "device": self.device, "space": self.space, "strategy": self.strategy,
                "budget": self.budget, "budget_ms": self.budget_ms, "range_ms": list(self.range_ms),
                **self._derived(), **self._measured(), "arch": self.derivation.arch.to_string(),
                "epochs": self.epochs, "world_size": self.world_size,
                "arch_params_identical_across_ranks": self.arch_params_identical, "lut": self.lut,
                "val_acc": self.val_acc, "arch_confidence": self.arch_confidence,
                "selection": self.derivation.detail.get("selection"),
                "repairs": self.derivation.detail.get("repairs"),  # the cell edges a repair or fill changed
                "seconds": self.seconds}

    def _derived(self) -> dict[str, Any]:
        derivation = self.derivation
        return {"predicted_ms": derivation.predicted_ms, "argmax_ms": derivation.argmax_ms,
                "repaired": derivation.repaired, "repair_method": str(derivation.method)}

    def _measured(self) -> dict[str, Any]:
        confirmation = self.confirmation
        return {"measured_ms": confirmation and confirmation["measured_ms"],
                "measured_ci_upper_ms": confirmation and confirmation["measured_ci_upper_ms"],
                "confirmation": confirmation}


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
