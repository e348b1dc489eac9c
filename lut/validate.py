"""Validation: build whole networks, measure them end to end with the LUT's profiler, compare with predictions.

Reports, for the calibrated prediction and for the plain sum of isolated blocks: MAPE, share within ±10%,
maximum error and Kendall's tau (does the LUT rank networks as the device does).
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from hwnas.arch import Arch
from hwnas.lut.build import measuring
from hwnas.lut.model import LatencyModel
from hwnas.lut.network_timing import STEADY_WAIT_S, NetworkTiming, measure_networks
from hwnas.lut.steady import reference_spec
from hwnas.profilers.base import Timing


@dataclass(frozen=True)
class NetworkResult:
    """One network: what the LUT predicts and what the device measured (ms per image)."""

    name: str
    kind: str  # random | published
    arch: str
    block_sum_ms: float
    predicted_ms: float
    measured: Timing
    reference_ratio: float = float("nan")  # the machine's speed just before, vs when the LUT was measured

    def to_row(self) -> dict:
        return {"name": self.name, "kind": self.kind, "block_sum_ms": self.block_sum_ms,
                "predicted_ms": self.predicted_ms, "measured_ms": self.measured.median,
                "measured_p10_ms": self.measured.p10, "measured_p90_ms": self.measured.p90,
                "error_pct": 100 * (self.predicted_ms / self.measured.median - 1),
                "reference_ratio": self.reference_ratio, "arch": self.arch}


def accuracy_metrics(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """MAPE (%), share within ±10%, max |error| (%), Kendall tau, n."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    error = (predicted - measured) / measured
    tau = stats.kendalltau(predicted, measured).statistic if len(measured) > 1 else float("nan")
    return {"n": int(len(measured)), "mape_pct": float(100 * np.abs(error).mean()),
            "within_10pct": float((np.abs(error) <= 0.10 + 1e-12).mean()),
            "max_error_pct": float(100 * np.abs(error).max()),
            "mean_error_pct": float(100 * error.mean()), "kendall_tau": float(tau)}


def sample_archs(space, count: int, seed: int, exclude: set[str] = frozenset()) -> list[tuple[str, Arch]]:
    """`count` distinct random architectures of `space`, none of them in `exclude` (e.g. calibration networks)."""
    rng = random.Random(seed)
    found: dict[str, Arch] = {}
    for _ in range(count * 50):
        if len(found) == count:
            break
        arch = space.sample(rng)
        text = arch.to_string()
        if text not in exclude and text not in found:
            found[text] = arch
    return [(f"{space.name}-{seed}-{i}", arch) for i, arch in enumerate(found.values())]


@dataclass(frozen=True)
class ValidationReport:
    results: list[NetworkResult]
    calibrated: dict[str, float]
    uncalibrated: dict[str, float]
    calibration: dict

    def to_dict(self) -> dict:
        return {"calibrated": self.calibrated, "uncalibrated": self.uncalibrated, "calibration": self.calibration,
                "networks": [r.to_row() for r in self.results]}


def compare(networks: Sequence[tuple[str, Arch]], kinds: Sequence[str], timings: Sequence[NetworkTiming],
            model: LatencyModel) -> ValidationReport:
    """Predictions of `model` against measured timings."""
    results = []
    for (name, arch), kind, measured in zip(networks, kinds, timings):
        block_sum = model.block_sum(arch)
        calibration = model.calibration_for(arch.resolution)
        results.append(NetworkResult(name, kind, arch.to_string(), block_sum, calibration.apply(block_sum),
                                     measured.timing, measured.reference_ratio))
    measured = [r.measured.median for r in results]
    return ValidationReport(
        results,
        calibrated=accuracy_metrics([r.predicted_ms for r in results], measured),
        uncalibrated=accuracy_metrics([r.block_sum_ms for r in results], measured),
        calibration={str(k): asdict(v) for k, v in model.calibrations.items()},
    )


def write_report(report: ValidationReport, out_dir: Path, title: str) -> dict[str, Path]:
    """results.csv, summary.json and a predicted-vs-measured scatter plot in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "results.csv", "json": out_dir / "summary.json",
             "plot": out_dir / "latency_pred_vs_meas.png"}
    rows = [r.to_row() for r in report.results]
    with paths["csv"].open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    _scatter(report, paths["plot"], title)
    return paths


def _scatter(report: ValidationReport, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = np.array([r.measured.median for r in report.results])
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for label, values, marker in (("sum of blocks", [r.block_sum_ms for r in report.results], "x"),
                                  ("calibrated", [r.predicted_ms for r in report.results], "o")):
        ax.scatter(measured, values, marker=marker, label=label, alpha=0.75)
    low, high = measured.min() * 0.85, measured.max() * 1.15
    line = np.linspace(low, high, 2)
    ax.plot(line, line, "k-", lw=0.8, label="y = x")
    ax.fill_between(line, line * 0.9, line * 1.1, color="grey", alpha=0.15, label="±10%")
    ax.set(xlabel="measured (ms)", ylabel="predicted (ms)", title=title, xlim=(low, high), ylim=(low, high))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def validate_device(device, space, lut_path: Path, samples: int, seed: int = 0, published: bool = True,
                    force: bool = False, on_network: Callable[[str], None] | None = None,
                    on_block: Callable[..., None] | None = None, steady_wait_s: float = STEADY_WAIT_S,
                    on_unsteady: Callable[[str, float], None] | None = None) -> ValidationReport:
    """Measure `samples` random held-out networks of `space` (plus the published ones) and compare."""
    with measuring(device, lut_path, force=force, must_exist=True) as (profiler, table):
        model = LatencyModel(table, force=force, space=space.name)
        calibrated_on = set(model.calibration_for(space.resolution).archs)
        networks = sample_archs(space, samples, seed, exclude=calibrated_on)
        kinds = ["random"] * len(networks)
        if published:
            extra = published_networks(space)
            networks, kinds = networks + extra, kinds + ["published"] * len(extra)
        timings = measure_networks(networks, profiler, table, on_network=on_network, on_block=on_block,
                                   steady_wait_s=steady_wait_s, on_unsteady=on_unsteady,
                                   reference=reference_spec(space.specs()))
        return compare(networks, kinds, timings, LatencyModel(table, force=force, space=space.name))


def published_networks(space) -> list[tuple[str, Arch]]:
    """The published reference networks at the space's resolution and class count (cell genotypes for cell
    spaces, the published chain networks otherwise)."""
    if getattr(space, "kind", "") == "cell":
        from hwnas.cells.catalog import published_cell_archs

        return published_cell_archs(space)
    from hwnas.spaces.published import PUBLISHED, get_published

    return [(name, get_published(name, space.resolution, space.num_classes)) for name in PUBLISHED]
