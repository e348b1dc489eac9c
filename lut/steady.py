"""Measuring on a steady machine. Shared CPUs switch between their own speed and a contended one (1.5-2.5x slower)
every second or so, and the contention slows every block and network alike (per-call correlation 0.93 here). So a
reference block is run between the calls of whatever is timed, and only calls whose reference neighbours ran at the
reference's own speed count (paired timing), each scaled by the baseline over its reference neighbours: the
few-percent drift left inside the tolerance cancels too (timings of the same networks repeated agree with Kendall
tau 0.92 instead of 0.85 at 128 px). A table remembers each reference's baseline, so networks validated later are
timed in the same units as its rows. Where calls are timed elsewhere (a remote agent), the reference is too quick
to time call by call, or the timed thing is a whole network, the reference is re-timed alone before and after each
whole timing instead: measuring waits while it runs slow, and times again when it moved. A whole network evicts
the reference's working set from cache, so beside it the reference reads slow for reasons of its own (1.4-1.9x
beside 224 px networks here), and scaling the network's calls by it made them read 30-50% fast. Rows and networks
timed at different speeds would compare the machine, not the LUT.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.blocks import BlockSpec
from hwnas.lut.table import LatencyTable
from hwnas.profilers.base import Artifact, MeasureSettings, Profiler, Timing
from hwnas.profilers.target.runners import Runner, measure_paired


@dataclass(frozen=True)
class Steadiness:
    """When the machine counts as steady (reference calls within `tolerance` of its baseline), how long to wait for
    it, and (timing between checks) how many times to measure again when it moved during a measurement."""

    tolerance: float = 0.10
    wait_s: float = 30.0
    attempts: int = 3
    pause_s: float = 0.5

    def __post_init__(self):
        if self.tolerance <= 0 or self.wait_s < 0 or self.attempts < 1 or self.pause_s <= 0:
            raise ValueError(f"bad steadiness {self}: tolerance and pause_s > 0, wait_s >= 0, attempts >= 1")

    def steady(self, ratio: float) -> bool:
        return abs(ratio - 1) <= self.tolerance


BUILD_STEADINESS = Steadiness()
# A reference faster than this jitters more than the tolerance from call to call (timer, scheduler), so calls are
# not paired with it; it is timed around whole timings instead (tiny blocks at 32 px run in tens of microseconds).
PAIRED_MIN_MS = 0.1
BASELINE_PROBES = 5  # timings of the reference, spread over a few pauses, whose lowest p10 is a build's baseline


def reference_spec(specs: Sequence[BlockSpec]) -> BlockSpec:
    """The block to watch the machine with: the costliest at the largest output size. Its time is its own arithmetic
    on its own activations with few weights, so it reads the same beside a small block or after a whole network
    (a weight-heavy reference runs up to 1.5x slower after a LiteRT network has flushed it from cache)."""
    largest = max(spec.out_shape[1] * spec.out_shape[2] for spec in specs)
    return max((spec for spec in specs if spec.out_shape[1] * spec.out_shape[2] == largest), key=_cost)


def stored_baseline(table: LatencyTable, key: str) -> float | None:
    """The baseline (ms per call) a table's rows were timed against with reference `key`, if it was one."""
    baseline = (table.meta.get("references") or {}).get(key)
    return None if baseline is None else float(baseline)


def remember_reference(table: LatencyTable, reference: ReferenceBlock) -> None:
    """Store the reference's baseline with the table, so later timings beside it use the units of its rows."""
    if not math.isfinite(reference.baseline) or reference.baseline <= 0:
        return  # a runtime that reports no usable low percentile leaves no baseline to compare against
    table.update_meta(lambda meta: meta.update(
        references={**(meta.get("references") or {}), reference.key: reference.baseline}))


def _cost(spec: BlockSpec) -> int:
    """Multiply-accumulates, roughly: parameters times output pixels."""
    _, height, width = spec.out_shape
    return sum(p.numel() for p in spec.build().parameters()) * height * width


class ReferenceBlock:
    """One block compiled and loaded once, run to watch the machine's speed against a baseline: the p10 of its per-call
    time (the machine at its own speed), from its LUT row when validating against a table, or, while building one,
    the lowest of its own timings (a faster one seen later lowers it)."""

    def __init__(self, profiler: Profiler, spec: BlockSpec, settings: MeasureSettings, batch: int,
                 baseline_ms: float | None = None, probe_pause_s: float = 0.5, tracks_fastest: bool = False):
        self.profiler, self.settings, self.key = profiler, settings, spec.key
        self.artifact = profiler.compile(spec.build(), (batch, *spec.input_shape))
        self.runner = profiler.open(self.artifact)
        self.tracks_fastest = tracks_fastest or baseline_ms is None
        if baseline_ms is None:
            probes = []
            for index in range(BASELINE_PROBES):
                if index:
                    time.sleep(probe_pause_s)
                probes.append(self._floor())
            baseline_ms = min(probes)
        self.baseline = baseline_ms
        self.waited_in_vain = False

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def _floor(self) -> float:
        return self.profiler.time(self.artifact, self.settings).p10

    def _against_baseline(self, floor_ms: float) -> float:
        if self.tracks_fastest and floor_ms < self.baseline:
            self.baseline = floor_ms
        return floor_ms / self.baseline

    def ratio(self) -> float:
        """The reference's p10 now over its baseline (1.0: the machine at its baseline speed; 1.4: 40% slower)."""
        return self._against_baseline(self._floor())

    def _patience(self, wait_s: float) -> float:
        """How long to wait for the baseline speed now: after a whole wait in vain, nothing until the machine is seen
        at that speed again; a lasting change of speed would otherwise cost every remaining block the full wait
        (90 s a block on a shared VM)."""
        return 0.0 if self.waited_in_vain else wait_s

    def settle(self, tolerance: float, max_wait_s: float, pause_s: float = 2.0) -> float:
        """Re-time until within `tolerance` of the baseline or the wait (`_patience`) has passed; the last ratio."""
        deadline = time.monotonic() + self._patience(max_wait_s)
        ratio = self.ratio()
        while abs(ratio - 1) > tolerance and time.monotonic() < deadline:
            time.sleep(pause_s)
            ratio = self.ratio()
        self.waited_in_vain = abs(ratio - 1) > tolerance
        return ratio

    def time(self, artifact: Artifact, settings: MeasureSettings, steadiness: Steadiness,
             pair_calls: bool = True) -> tuple[Timing, float]:
        """`artifact` timed on a steady machine, and the ratio of the reference's speed around it to its baseline
        (within tolerance: steady; otherwise the caller says the timing is suspect). `pair_calls=False` (whole
        networks) times it between checks of the reference run alone, never scaled by the reference."""
        paired = pair_calls and self.runner is not None and self.baseline >= PAIRED_MIN_MS
        target = self.profiler.open(artifact) if paired else None
        if target is None:
            return self._time_between_checks(artifact, settings, steadiness)
        try:
            return self._time_paired(target, settings, steadiness)
        finally:
            target.close()

    def _time_paired(self, target: Runner, settings: MeasureSettings, steadiness: Steadiness) -> tuple[Timing, float]:
        """Calls that count sit between two reference calls within tolerance of the baseline; when too few did
        within the timing budget plus the wait, every call counts and the ratio says how slow the machine was.
        Each call is scaled by the baseline over its two reference neighbours, so the timing reads as if the
        machine had run at the baseline's speed (drift within the tolerance cancels, call by call)."""
        limit = self.baseline * (1 + steadiness.tolerance)
        paired = measure_paired(target.call_ms, self.runner.call_ms, limit, settings.to_dict(),
                                self._patience(steadiness.wait_s))
        self.waited_in_vain = len(paired.counted) < settings.min_repeats
        if not self.waited_in_vain:
            beside = [r for before, after in zip(paired.reference, paired.reference[1:])
                      if before <= limit and after <= limit for r in (before, after)]
            ratio = self._against_baseline(float(np.percentile(beside, 10)))
            relative = paired.relative
        else:
            ratio = float(np.median(paired.reference)) / self.baseline
            relative = paired.every_relative
        return Timing.from_samples([r * self.baseline for r in relative]), ratio

    def _time_between_checks(self, artifact: Artifact, settings: MeasureSettings,
                             steadiness: Steadiness) -> tuple[Timing, float]:
        """After waiting for the reference to come within tolerance, and again (up to `attempts`) when it moved while
        the artifact was timed; when no attempt was steady, the one nearest the baseline."""
        best: tuple[Timing, float] | None = None
        for _ in range(steadiness.attempts if steadiness.wait_s > 0 else 1):
            before = self.settle(steadiness.tolerance, steadiness.wait_s, steadiness.pause_s)
            timing = self.profiler.time(artifact, settings)
            ratio = max(before, self.ratio(), key=lambda r: abs(r - 1))
            if best is None or abs(ratio - 1) < abs(best[1] - 1):
                best = (timing, ratio)
            if steadiness.steady(ratio):
                break
        return best
