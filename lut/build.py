"""Building a LUT: measure every block a space needs, append each row as it is measured, skip what is there.

A reference block is re-timed every N blocks; when its median moves beyond the tolerance (thermal throttling,
a noisy neighbour), the run records a drift event and says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hwnas.blocks import BlockSpec
from hwnas.device import Device
from hwnas.lut.table import LatencyTable
from hwnas.profilers import get_profiler
from hwnas.profilers.base import MeasureSettings, Profiler, fingerprint_id


@dataclass(frozen=True)
class DriftEvent:
    """The reference block's median at block `index`, relative to its first measurement."""

    index: int
    ratio: float


@dataclass
class ProfileReport:
    """What a profiling run did and where its time went."""

    measured: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    compile_s: float = 0.0  # export/conversion/engine build
    timing_s: float = 0.0  # inside the runtime's timing loop, warm-up and session creation included
    timed_ms: float = 0.0  # sum over blocks of median latency x timed calls: the irreducible part
    reference_key: str = ""
    drift: list[DriftEvent] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "drift"},
                "drift": [{"index": d.index, "ratio": d.ratio} for d in self.drift]}


def table_meta(profiler: Profiler, settings: MeasureSettings) -> dict:
    """The meta.json fields that tie a table to the setup that measured it."""
    fingerprint = profiler.fingerprint()
    return {"device": profiler.device.name, "fingerprint": fingerprint, "fingerprint_id": fingerprint_id(fingerprint),
            "settings": settings.to_dict()}


def profile_specs(specs: Sequence[BlockSpec], profiler: Profiler, table: LatencyTable,
                  settings: MeasureSettings = MeasureSettings(), reference_every: int = 25,
                  drift_tolerance: float = 0.10,
                  on_block: Callable[[BlockSpec, bool], None] | None = None) -> ProfileReport:
    """Measure each spec not yet in `table` and append it; `on_block(spec, measured)` reports progress."""
    report = ProfileReport()
    start = time.perf_counter()
    batch = profiler.device.batch
    unique = list(dict.fromkeys(specs))
    todo = [spec for spec in unique if spec.key not in table]
    report.skipped = len(unique) - len(todo)
    for spec in unique:
        if spec.key in table and on_block:
            on_block(spec, False)
    reference = ReferenceBlock(profiler, todo[0], settings, batch) if (todo and reference_every) else None
    if reference:
        report.reference_key = todo[0].key
    for index, spec in enumerate(todo):
        tick = time.perf_counter()
        artifact = profiler.compile(spec.build(), (batch, *spec.input_shape))
        tock = time.perf_counter()
        timing = profiler.time(artifact, settings)
        report.compile_s += tock - tick
        report.timing_s += time.perf_counter() - tock
        report.timed_ms += timing.median * timing.n
        table.append(spec, timing, note=_note(artifact.meta))
        report.measured += 1
        if on_block:
            on_block(spec, True)
        if reference and index and index % reference_every == 0:
            ratio = reference.ratio()
            if abs(ratio - 1) > drift_tolerance:
                report.drift.append(DriftEvent(index, ratio))
    report.wall_s = time.perf_counter() - start
    return report


class ReferenceBlock:
    """One block compiled once and re-timed to watch the machine's speed against a baseline: its first timing, or
    its LUT row when validating against the table."""

    def __init__(self, profiler: Profiler, spec: BlockSpec, settings: MeasureSettings, batch: int,
                 baseline_ms: float | None = None):
        self.profiler, self.settings = profiler, settings
        self.artifact = profiler.compile(spec.build(), (batch, *spec.input_shape))
        self.baseline = baseline_ms if baseline_ms is not None else sorted(
            profiler.time(self.artifact, settings).median for _ in range(3))[1]

    def ratio(self) -> float:
        return self.profiler.time(self.artifact, self.settings).median / self.baseline

    def settle(self, tolerance: float, max_wait_s: float, pause_s: float = 2.0) -> float:
        """Re-time until within `tolerance` of the baseline or `max_wait_s` has passed; the last ratio."""
        deadline = time.monotonic() + max_wait_s
        ratio = self.ratio()
        while abs(ratio - 1) > tolerance and time.monotonic() < deadline:
            time.sleep(pause_s)
            ratio = self.ratio()
        return ratio


def _note(meta: dict) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(meta.items()))


@contextmanager
def measuring(device: Device, lut_path: Path, settings: MeasureSettings = MeasureSettings(), force: bool = False,
              must_exist: bool = False) -> Iterator[tuple[Profiler, LatencyTable]]:
    """A profiler for `device` and its table opened for appending (fingerprints checked)."""
    if must_exist:
        LatencyTable.load(lut_path)  # one-line error when the table was never built
    with get_profiler(device) as profiler:
        yield profiler, LatencyTable.open(lut_path, table_meta(profiler, settings), force=force)


def build_lut(device: Device, specs: Sequence[BlockSpec], lut_path: Path,
              settings: MeasureSettings = MeasureSettings(), force: bool = False, reference_every: int = 25,
              on_block: Callable[[BlockSpec, bool], None] | None = None) -> tuple[ProfileReport, LatencyTable]:
    """Open (or create) the device's table at `lut_path` and measure what it lacks of `specs`."""
    with measuring(device, lut_path, settings, force) as (profiler, table):
        report = profile_specs(specs, profiler, table, settings, reference_every, on_block=on_block)
    return report, table
