"""What the search benchmarks share: the spaces they search (real ones, or tiny ones under --quick), a measured
LUT for them, a silent search run, and the table + JSON output."""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.lut.model import LatencyModel
from hwnas.lut.steady import BUILD_STEADINESS
from hwnas.profilers.base import MeasureSettings
from hwnas.spaces.chain import Space, Stage
from hwnas.spaces.dense import DenseSpace, RoutingBlock
from hwnas.spaces.files import resolve_space

# The space each strategy searches in the full runs (the space of its own paper).
SPACE_OF = {"fbnet": "fbnet", "proxyless": "proxyless", "hardcore": "hardcore", "densenas": "densenas"}
QUICK_SETTINGS = MeasureSettings(warmup=3, warmup_s=0.01, min_repeats=10, max_repeats=100, target_ci=0.05,
                                 budget_s=0.3)


def tiny_chain(resolution: int, num_classes: int) -> Space:
    """A small chain space (depth search in its first stage) for --quick runs."""
    ops = ("ir_k3_e1", "ir_k3_e3", "ir_k5_e3", "ir_k5_e6")
    stages = (Stage(16, 3, 2, ops, min_layers=1), Stage(24, 3, 2, (*ops, "skip"), first_ops=ops),
              Stage(32, 2, 2, (*ops, "skip"), first_ops=ops))
    return Space("tiny", ("cn_k3_s2_c8",), stages, ("cn_k1_c64",), num_classes=num_classes, resolution=resolution,
                 act="relu", description="quick-mode chain space")


def tiny_dense(resolution: int, num_classes: int) -> DenseSpace:
    """A small dense routing space for --quick runs."""
    blocks = (RoutingBlock(16, 2, 1, 1), RoutingBlock(16, 2, 1, 1), RoutingBlock(24, 3, 2, 1),
              RoutingBlock(24, 3, 2, 1), RoutingBlock(32, 4, 3, 0))
    return DenseSpace("tinydense", ("cn_k3_s2_c8",), blocks, ("ir_k3_e1", "ir_k3_e3", "ir_k5_e3"),
                      ("ir_k3_e1", "ir_k3_e3", "skip"), "cn_k1_c64", last_stage=4, connections=2,
                      num_classes=num_classes, resolution=resolution, act="relu")


def bench_space(strategy: str, quick: bool, resolution: int, num_classes: int = 10) -> Any:
    if quick:
        return tiny_dense(resolution, num_classes) if strategy == "densenas" else tiny_chain(resolution, num_classes)
    return resolve_space(SPACE_OF[strategy], resolution, num_classes)


def measured_model(lut: Path, spaces: Sequence[Any], device: str = "cpu", quick: bool = False) -> LatencyModel:
    """The device's LUT holding every block of `spaces` (measuring what it lacks, with a real runtime)."""
    specs = list(dict.fromkeys(spec for space in spaces for spec in space.specs()))
    settings = QUICK_SETTINGS if quick else MeasureSettings()
    _, table = build_lut(get_device(device), specs, lut, settings, steadiness=None if quick else BUILD_STEADINESS)
    return LatencyModel(table)


def machine() -> dict[str, Any]:
    from hwnas.profilers.base import cpu_model

    return {"cpu": cpu_model(), "cores": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version(), "host": platform.node()}


def _git(*args: str) -> str:
    import subprocess

    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


# the code a benchmark runs is the tree it started from: commits made while it runs do not change it
STARTED_FROM = {"commit": _git("rev-parse", "HEAD"), "dirty": bool(_git("status", "--porcelain", "-uno"))}


def provenance(lut: Path | None = None) -> dict[str, Any]:
    """What makes a result traceable: the commit the run started from (and whether the tree had changes), the
    command line, and the LUT it predicted with (its setup fingerprint and a hash of its rows)."""
    import hashlib
    import sys

    found: dict[str, Any] = {**STARTED_FROM, "argv": sys.argv}
    if lut is not None and Path(lut).exists():
        from hwnas.lut.table import LatencyTable

        table = LatencyTable.load(lut)
        found["lut"] = {"path": str(lut), "fingerprint_id": table.meta["fingerprint_id"], "rows": len(table.frame),
                        "sha256": hashlib.sha256(Path(lut).read_bytes()).hexdigest()[:16],
                        "calibration": table.meta.get("calibration")}
    return found


def report(title: str, columns: Sequence[str], rows: Sequence[dict[str, Any]], out: Path,
           extra: dict[str, Any], lut: Path | None = None) -> None:
    """Print a table of `rows` and write them with `extra`, the machine and the provenance as JSON to `out`."""
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    Console(width=200).print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    data = {**extra, "machine": machine(), "provenance": provenance(lut), "rows": list(rows)}
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    Console().print(f"wrote {out}")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
