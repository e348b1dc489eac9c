"""The latency model: a network's latency is the sum of its blocks' LUT rows, corrected by a fitted calibration."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from hwnas.arch import Arch
from hwnas.blocks import BlockSpec
from hwnas.errors import HwnasError, MissingLatencyError
from hwnas.lut.schema import parse_calibration_key
from hwnas.lut.table import LatencyTable


@dataclass(frozen=True)
class Calibration:
    """measured ≈ scale · Σ blocks + offset_ms: what isolated blocks miss, fitted on whole networks at one resolution.
    """

    scale: float = 1.0
    offset_ms: float = 0.0
    networks: int = 0  # how many measured networks the fit used
    fitted: str = ""  # when (ISO date)
    archs: tuple[str, ...] = ()  # the networks fitted on; validation must not reuse them
    fit_mape_pct: float = float("nan")  # MAPE on the fitted networks themselves

    def apply(self, block_sum_ms):
        """The prediction for a plain block sum (a float or a tensor: every latency term of a search calls this)."""
        return self.scale * block_sum_ms + self.offset_ms

    def block_sum_at(self, ms: float) -> float:
        """The plain block sum whose prediction is `ms` (what a budget allows the blocks before calibration)."""
        return (ms - self.offset_ms) / self.scale

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "archs": list(self.archs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and k != "archs"},
                   archs=tuple(data.get("archs") or ()))


class LatencyModel:
    """Predicts latency (ms per image) on one device from its LUT, corrected by the calibration fitted on networks
    of `space` (a calibration of one space is never applied to another: their block mixes differ)."""

    def __init__(self, table: LatencyTable, force: bool = False, calibrated: bool = True, space: str | None = None):
        self.table = table
        self.force = force
        self.space = space
        stored = (table.meta.get("calibration") or {}) if calibrated and space else {}
        self.calibrations = {parsed[1]: Calibration.from_dict(data) for key, data in stored.items()
                             if (parsed := parse_calibration_key(key)) and parsed[0] == space}

    def calibration_for(self, resolution: int) -> Calibration:
        """The fit of this model's space at this input resolution; identity (plain sum) when none was fitted."""
        return self.calibrations.get(resolution, Calibration())

    def block_sum(self, arch: Arch) -> float:
        """Uncalibrated: the plain sum of the blocks' median latencies."""
        return float(self.block_ms(arch.specs()).sum())

    def predict(self, arch: Arch) -> float:
        predicted = self.calibration_for(arch.resolution).apply(self.block_sum(arch))
        if not 0 < predicted < math.inf:
            raise HwnasError(f"{self.table.path}: the calibration at {arch.resolution} px predicts {predicted:.4g} ms "
                             "for this network; refit it with `hwnas lut calibrate`")
        return predicted

    def block_ms(self, specs: Iterable[BlockSpec]) -> np.ndarray:
        """The blocks' median latencies (ms, uncalibrated) in order: what every latency term of a search sums."""
        return self.table.latencies([spec.key for spec in specs], self.force)

    def require_blocks(self, specs: Iterable[BlockSpec]) -> None:
        """One MissingLatencyError naming every block of `specs` (a whole space) that the table lacks."""
        missing = self.table.missing(spec.key for spec in specs)
        if missing:
            raise MissingLatencyError(str(self.table.path), missing)
