"""Timing whole networks: the one way hwnas measures a network end to end, on a machine its LUT's reference block
shows at the table's speed (lut/steady.py: checked alone before and after each network, which is never scaled by
it). Calibration, validation, search confirmation, `train` and `export --measure` all time here, so their figures
are in the same units of noise as the table."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hwnas.arch import Arch
from hwnas.blocks import BlockSpec
from hwnas.device import Device
from hwnas.lut.build import measuring, profile_specs
from hwnas.lut.steady import ReferenceBlock, Steadiness, reference_spec, stored_baseline
from hwnas.lut.table import LatencyTable
from hwnas.profilers.base import Artifact, MeasureSettings, Profiler, Timing

NETWORK_SETTINGS = MeasureSettings(warmup=5, min_repeats=15, max_repeats=300, target_ci=0.01, budget_s=4.0)
STEADY_TOLERANCE = Steadiness().tolerance  # how far the reference may run from its LUT row while a network is timed
STEADY_WAIT_S = Steadiness().wait_s  # how long to wait for it to come back


@dataclass(frozen=True)
class NetworkTiming:
    """A whole network's timing (ms per image) and how fast the machine was just before it, relative to the LUT
    (1.0 = as fast as when the table was measured; 1.4 = a reference block took 40% longer)."""

    timing: Timing
    reference_ratio: float

    @property
    def median_ms(self) -> float:
        return self.timing.median

    @property
    def upper_ms(self) -> float:
        """The upper end of the median's 95% confidence interval (the p90 where too few calls bound it)."""
        if math.isfinite(self.timing.rel_ci):
            return self.timing.median * (1 + self.timing.rel_ci)
        return self.timing.p90 if math.isfinite(self.timing.p90) else self.timing.median

    def to_dict(self) -> dict[str, float]:
        return {"median_ms": self.median_ms, "ci_upper_ms": self.upper_ms,
                "ci_lower_ms": 2 * self.median_ms - self.upper_ms, "p10_ms": self.timing.p10,
                "p90_ms": self.timing.p90, "n": self.timing.n, "reference_ratio": self.reference_ratio}


def measure_networks(networks: Sequence[tuple[str, Arch]], profiler: Profiler, table: LatencyTable,
                     settings: MeasureSettings = NETWORK_SETTINGS,
                     on_network: Callable[[str], None] | None = None,
                     on_block: Callable[..., None] | None = None,
                     steady_tolerance: float = STEADY_TOLERANCE, steady_wait_s: float = STEADY_WAIT_S,
                     on_unsteady: Callable[[str, float], None] | None = None,
                     reference: BlockSpec | None = None,
                     compiled: Mapping[str, Artifact] | None = None) -> list[NetworkTiming]:
    """Profile any blocks the table lacks, then time each whole network on the profiler's device.

    `reference` (default: the rule's pick among the networks' blocks; pass the space's, the block its table was
    built beside) is the reference block (lut/steady.py): a network is timed once the reference runs within
    `steady_tolerance` of the baseline the table stored for it (else its row's p10), and again when it moved
    meanwhile; measuring waits up to `steady_wait_s` for that, and `on_unsteady(name, ratio)` hears of networks
    timed anyway. `compiled` maps a network's name to an artifact to time instead of compiling it (an exported
    file). Comparing a LUT with networks timed on a slower machine measures the machine, not the LUT."""
    specs = [spec for _, arch in networks for spec in arch.specs()]
    profile_specs(specs, profiler, table, on_block=on_block)
    if not networks:
        return []
    spec = reference or reference_spec(list(dict.fromkeys(specs)))
    baseline = stored_baseline(table, spec.key)
    reference = ReferenceBlock(profiler, spec, MeasureSettings(), profiler.device.batch,
                               baseline if baseline is not None else table.p10(spec.key))
    steadiness = Steadiness(steady_tolerance, steady_wait_s)
    measured = []
    try:
        for name, arch in networks:
            artifact = (compiled or {}).get(name) or profiler.compile(arch.build(), (profiler.device.batch,
                                                                                      *arch.input_shape[1:]))
            timing, ratio = reference.time(artifact, settings, steadiness, pair_calls=False)
            if not steadiness.steady(ratio) and on_unsteady:
                on_unsteady(name, ratio)
            measured.append(NetworkTiming(timing.per_image(profiler.device.batch), ratio))
            if on_network:
                on_network(name)
    finally:
        reference.close()
    return measured


def measure_on_device(device: Device, lut_path: Path, networks: Sequence[tuple[str, Arch]],
                      reference: BlockSpec | None = None, force: bool = False,
                      on_unsteady: Callable[[str, float], None] | None = None,
                      compiled: Mapping[str, Callable[[Profiler], Artifact]] | None = None,
                      settings: MeasureSettings = NETWORK_SETTINGS) -> list[NetworkTiming]:
    """Open `device`'s profiler and its table (locked while timing) and time `networks` the steady way.
    `compiled` maps names to a function giving the artifact to time on that profiler (an exported file)."""
    with measuring(device, lut_path, force=force, must_exist=True) as (profiler, table):
        artifacts = {name: make(profiler) for name, make in (compiled or {}).items()}
        return measure_networks(networks, profiler, table, settings, reference=reference, on_unsteady=on_unsteady,
                                compiled=artifacts)
