"""Plots a search writes at the end: architecture weights per layer (heat map), expected latency per epoch."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_arch_weights(rows: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str = "") -> Path:
    """One row per searchable layer, one column per candidate (rows of unequal length padded blank)."""
    plt = _pyplot()
    width = max(len(r) for _, r in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, (_, values) in enumerate(rows):
        grid[i, : len(values)] = values
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * width + 2), max(3.0, 0.28 * len(rows) + 1.5)))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=7)
    ax.set_xlabel("candidate")
    ax.set_ylabel("layer")
    ax.set_title(title or "architecture weights", fontsize=9)
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_latency(history: Sequence[dict[str, Any]], budget_ms: float, path: str | Path,
                 derived_ms: float | None = None) -> Path:
    """Expected latency of the architecture distribution after each epoch, with the budget."""
    plt = _pyplot()
    epochs = [int(r["epoch"]) for r in history]
    expected = [float(r["expected_ms"]) for r in history]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.plot(epochs, expected, marker="o", label="expected latency")
    ax.axhline(budget_ms, color="red", linestyle="--", label=f"budget {budget_ms:.4g} ms")
    if derived_ms is not None:
        ax.axhline(derived_ms, color="green", linestyle=":", label=f"derived {derived_ms:.4g} ms")
    ax.set_xlabel("epoch")
    ax.set_ylabel("ms per image (LUT)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
