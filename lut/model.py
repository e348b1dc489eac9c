"""The latency model: a network's latency is the sum of its blocks' LUT rows, corrected by a fitted calibration."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from hwnas.lut.table import LatencyTable

from hwnas.arch import Arch
from hwnas.errors import MissingLatencyError
from hwnas.spaces import Space


@dataclass(frozen=True)
class Calibration:
    """measured ≈ scale · Σ blocks + offset_ms: what a sum of isolated blocks misses, fitted on whole networks."""

    scale: float = 1.0
    offset_ms: float = 0.0
    networks: int = 0  # how many measured networks the fit used
    fitted: str = ""  # when (ISO date)

    def apply(self, block_sum_ms: float) -> float:
        return self.scale * block_sum_ms + self.offset_ms

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Calibration:
        return cls(**data) if data else cls()


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


class LatencyModel:
    """Predicts latency (ms per image) on one device from its LUT."""

    def __init__(self, table: LatencyTable, force: bool = False, calibrated: bool = True):
        self.table = table
        self.force = force
        self.calibration = Calibration.from_dict(table.meta.get("calibration")) if calibrated else Calibration()

    def block_sum(self, arch: Arch) -> float:
        """Uncalibrated: the plain sum of the blocks' median latencies."""
        return float(self.table.latencies([spec.key for spec in arch.specs()], self.force).sum())

    def predict(self, arch: Arch) -> float:
        return self.calibration.apply(self.block_sum(arch))

    def space_latency(self, space: Space) -> SpaceLatency:
        """Arrays for the differentiable latency terms of a search over `space`."""
        missing = self.table.missing(spec.key for spec in space.specs())
        if missing:
            raise MissingLatencyError(str(self.table.path), missing)
        stem, head = space.fixed_specs()
        fixed = float(self.table.latencies([s.key for s in (*stem, *head)], self.force).sum())
        per_position = tuple(self.table.latencies([s.key for s in position.specs], self.force)
                             for position in space.positions)
        return SpaceLatency(fixed, per_position, self.calibration)
