"""What a DARTS user watches during a search: skip connections in the derived cells (the collapse of DARTS to
parameter-free cells, thesis Sec. 3.2.2), entropy of the architecture weights, and the derived genotype per
epoch; written as `cells.csv` and plotted as `cells.png` in the run directory."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hwnas.cells.genotype import Genotype
from hwnas.cells.losses import weight_entropy

FILE_CSV, FILE_PLOT = "cells.csv", "cells.png"


class CellDiagnostics:
    """One record per epoch (a repeated epoch replaces its record, so a resumed run stays consistent)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def record(self, epoch: int, genotype: Genotype, weights: Mapping[str, torch.Tensor], criterion: str,
               by_criterion: Mapping[str, Genotype] | None = None) -> dict[str, float]:
        """Store epoch `epoch`'s diagnostics: the selected genotype (by `criterion`) and, in `by_criterion`, what
        each selection criterion picks from the same supernet. Returns the numeric part (for history.csv)."""
        numbers: dict[str, float] = {"skip_connect": float(genotype.count("skip_connect"))}
        if len(genotype.names) <= 3:
            numbers.update({f"skip_{name}": float(cell.count("skip_connect")) for name, cell in genotype.cells})
        others = dict(by_criterion or {})
        numbers.update({f"skip_connect_{name}": float(g.count("skip_connect")) for name, g in others.items()})
        numbers["arch_entropy"] = float(torch.stack([weight_entropy(w) for w in weights.values()]).mean())
        self.records = [r for r in self.records if r["epoch"] != epoch]
        self.records.append({"epoch": epoch, **numbers, "select": criterion, "genotype": genotype.to_string(),
                             **{f"genotype_{name}": g.to_string() for name, g in others.items()}})
        return numbers

    def state_dict(self) -> dict[str, Any]:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.records = [dict(r) for r in state.get("records", [])]

    def write(self, folder: str | Path) -> dict[str, Path]:
        """cells.csv (every record) and cells.png (skip connections and entropy per epoch) in `folder`."""
        folder = Path(folder)
        paths = {"csv": folder / FILE_CSV, "plot": folder / FILE_PLOT}
        columns = list(dict.fromkeys(key for record in self.records for key in record))
        with paths["csv"].open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.records)
        plot_diagnostics(self.records, paths["plot"])
        return paths


def plot_diagnostics(records: list[Mapping[str, Any]], path: Path, title: str = "cell search") -> None:
    """Skip connections in the derived cells and mean architecture-weight entropy against the epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    top.plot(epochs, [r["skip_connect"] for r in records], marker="o", label="all cells")
    for key in sorted({k for r in records for k in r if k.startswith("skip_") and k != "skip_connect"
                       and not k.startswith("skip_connect_")}):
        top.plot(epochs, [r.get(key, float("nan")) for r in records], marker=".", label=key[5:])
    for key in sorted({k for r in records for k in r if k.startswith("skip_connect_")}):
        top.plot(epochs, [r.get(key, float("nan")) for r in records], linestyle="--", label=f"by {key[13:]}")
    top.set_ylabel("skip connections\nin derived cells")
    top.legend(fontsize=8)
    bottom.plot(epochs, [r["arch_entropy"] for r in records], marker="o", color="tab:red")
    bottom.set_ylabel("mean edge entropy\n(nats)")
    bottom.ticklabel_format(axis="y", useOffset=False)
    bottom.set_xlabel("epoch")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    top.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
