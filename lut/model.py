"""The latency model: a network's latency is the sum of its blocks' LUT rows, corrected by a fitted calibration."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from hwnas.arch import Arch
from hwnas.errors import HwnasError, MissingLatencyError
from hwnas.lut.table import LatencyTable
from hwnas.spaces import Space


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

    def apply(self, block_sum_ms: float) -> float:
        return self.scale * block_sum_ms + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "archs": list(self.archs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and k != "archs"},
                   archs=tuple(data.get("archs") or ()))


@dataclass(frozen=True)
class SpaceLatency:
    """A space's latencies as arrays: the fixed stem + head sum and each position's candidate latencies (ms)."""

    fixed_ms: float
    candidates_ms: tuple[np.ndarray, ...]
    calibration: Calibration

    def of_choices(self, choices: list[int]) -> float:
        block_sum = self.fixed_ms + sum(float(c[i]) for c, i in zip(self.candidates_ms, choices))
        return self.calibration.apply(block_sum)

    @property
    def range_ms(self) -> tuple[float, float]:
        """The fastest and slowest architecture of the space, calibrated (position-wise min and max)."""
        low = self.fixed_ms + sum(float(c.min()) for c in self.candidates_ms)
        high = self.fixed_ms + sum(float(c.max()) for c in self.candidates_ms)
        return self.calibration.apply(low), self.calibration.apply(high)


def calibration_key(space: str, resolution: int) -> str:
    """Where meta.json keeps the fit made on networks of `space` at `resolution` (e.g. 'fbnet@224')."""
    return f"{space}@{int(resolution)}"


def parse_calibration_key(key: str) -> tuple[str, int] | None:
    """(space, resolution) of a key, or None for a key of the old per-resolution form ('224'): such a fit does not
    say which networks it was made on, so it is never applied."""
    space, _, resolution = key.rpartition("@")
    return (space, int(resolution)) if space and resolution.isdigit() else None


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
        return float(self.table.latencies([spec.key for spec in arch.specs()], self.force).sum())

    def predict(self, arch: Arch) -> float:
        predicted = self.calibration_for(arch.resolution).apply(self.block_sum(arch))
        if not 0 < predicted < math.inf:
            raise HwnasError(f"{self.table.path}: the calibration at {arch.resolution} px predicts {predicted:.4g} ms "
                             "for this network; refit it with `hwnas lut calibrate`")
        return predicted

    def space_latency(self, space: Space) -> SpaceLatency:
        """Arrays for the differentiable latency terms of a search over `space`."""
        missing = self.table.missing(spec.key for spec in space.specs())
        if missing:
            raise MissingLatencyError(str(self.table.path), missing)
        stem, head = space.fixed_specs()
        fixed = float(self.table.latencies([s.key for s in (*stem, *head)], self.force).sum())
        per_position = tuple(self.table.latencies([s.key for s in position.specs], self.force)
                             for position in space.positions)
        return SpaceLatency(fixed, per_position, self.calibration_for(space.resolution))
