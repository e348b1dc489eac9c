"""Calibration: fit what a sum of isolated blocks misses (per-call overhead, cache effects) on measured networks."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np

from hwnas.lut.build import measuring
from hwnas.lut.model import Calibration, LatencyModel
from hwnas.lut.network_timing import STEADY_WAIT_S, measure_networks
from hwnas.lut.schema import calibration_key
from hwnas.lut.steady import reference_spec
from hwnas.lut.table import LatencyTable
from hwnas.lut.validate import sample_archs

OFFSET_SPAN = 2.0  # fit a per-call offset only when the networks' block sums span at least this factor


def fit_calibration(block_sums: Sequence[float], measured: Sequence[float], archs: Sequence[str]) -> Calibration:
    """measured = scale · sum + offset by least squares when the block sums span enough (x2) to tell an offset from a
    scale; otherwise scale = the median ratio, offset 0. (Ten networks of one space at one resolution span ~1.5x:
    there a two-parameter fit turns a few percent of timing noise into slopes like 1.5 with a -1 ms offset.)"""
    sums, times = np.asarray(block_sums, float), np.asarray(measured, float)
    if len(sums) >= 3 and sums.max() >= OFFSET_SPAN * sums.min():
        scale, offset = np.polyfit(sums, times, 1)
    else:
        scale, offset = float(np.median(times / sums)), 0.0
    fitted = scale * sums + offset
    return Calibration(scale=float(scale), offset_ms=float(offset), networks=len(sums),
                       fitted=datetime.now(UTC).isoformat(timespec="seconds"), archs=tuple(archs),
                       fit_mape_pct=float(100 * np.abs(fitted / times - 1).mean()))


def store_calibration(table: LatencyTable, space: str, resolution: int, calibration: Calibration) -> None:
    """Save the fit in the table's meta.json, keyed by the space and resolution of the networks it was made on."""
    table.update_meta(lambda meta: meta.update(
        calibration={**(meta.get("calibration") or {}), calibration_key(space, resolution): calibration.to_dict()}))


def calibrate_from_timings(table: LatencyTable, space: str, archs, measured_ms: Sequence[float],
                           force: bool = False) -> Calibration:
    """Fit on networks of `space` already measured (all at one resolution) and store the result with the table."""
    model = LatencyModel(table, force=force, calibrated=False)
    resolutions = {arch.resolution for arch in archs}
    if len(resolutions) != 1:
        raise ValueError(f"calibration networks must share one resolution, got {sorted(resolutions)}")
    calibration = fit_calibration([model.block_sum(a) for a in archs], measured_ms, [a.to_string() for a in archs])
    store_calibration(table, space, resolutions.pop(), calibration)
    return calibration


def calibrate_device(device, space, lut_path, networks: int = 10, seed: int = 1000, force: bool = False,
                     on_network=None, on_block=None, steady_wait_s: float = STEADY_WAIT_S,
                     on_unsteady=None) -> Calibration:
    """Measure `networks` random networks of `space` end to end, fit the calibration, store it with the table."""
    with measuring(device, lut_path, force=force, must_exist=True) as (profiler, table):
        chosen = sample_archs(space, networks, seed)
        timings = measure_networks(chosen, profiler, table, on_network=on_network, on_block=on_block,
                                   steady_wait_s=steady_wait_s, on_unsteady=on_unsteady,
                                   reference=reference_spec(space.specs()))
        return calibrate_from_timings(table, space.name, [arch for _, arch in chosen],
                                      [t.timing.median for t in timings], force)
