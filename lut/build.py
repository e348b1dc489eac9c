"""Building a LUT: measure every block a space needs, append each row as it is measured, skip what is there.

Each block is timed on a steady machine (lut/steady.py): its calls alternate with a reference block's, and only
calls made while the reference ran at its own speed count; a block that never got enough of them (a noisy neighbour,
throttling) is timed anyway, noted in its row and reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hwnas.blocks import BlockSpec
from hwnas.device import Device
from hwnas.lut.steady import (
    BUILD_STEADINESS,
    ReferenceBlock,
    Steadiness,
    reference_spec,
    remember_reference,
    stored_baseline,
)
from hwnas.lut.table import LatencyTable, table_lock
from hwnas.profilers import get_profiler
from hwnas.profilers.base import MeasureSettings, Profiler, fingerprint_id


@dataclass(frozen=True)
class UnsteadyBlock:
    """A block timed while the reference block ran `ratio` x its baseline, after waiting for it in vain."""

    key: str
    ratio: float


@dataclass
class ProfileReport:
    """What a profiling run did and where its time went."""

    measured: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    compile_s: float = 0.0  # export/conversion/engine build
    timing_s: float = 0.0  # inside the runtime's timing loop (the block's and the reference's), sessions included
    timed_ms: float = 0.0  # sum over blocks of median latency x timed calls: the irreducible part
    reference_key: str = ""
    reference_ms: float = float("nan")  # the reference block's baseline (its lowest p10)
    retimed: int = 0  # blocks measured again because the baseline they were counted against proved too slow
    unsteady: list[UnsteadyBlock] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "unsteady"},
                "unsteady": [{"key": u.key, "ratio": u.ratio} for u in self.unsteady]}


def table_meta(profiler: Profiler, settings: MeasureSettings) -> dict:
    """The meta.json fields that tie a table to the setup that measured it."""
    fingerprint = profiler.fingerprint()
    return {"device": profiler.device.name, "fingerprint": fingerprint, "fingerprint_id": fingerprint_id(fingerprint),
            "settings": settings.to_dict()}


def profile_specs(specs: Sequence[BlockSpec], profiler: Profiler, table: LatencyTable,
                  settings: MeasureSettings = MeasureSettings(),
                  steadiness: Steadiness | None = BUILD_STEADINESS,
                  on_block: Callable[[BlockSpec, bool], None] | None = None,
                  on_unsteady: Callable[[str, float], None] | None = None) -> ProfileReport:
    """Measure each spec not yet in `table` and append it; `on_block(spec, measured)` reports progress.

    With `steadiness`, a reference block runs beside every block (lut/steady.py; `on_unsteady(key, ratio)` hears of
    blocks that had to be timed off its speed); None times each block alone."""
    report = ProfileReport()
    start = time.perf_counter()
    batch = profiler.device.batch
    unique = list(dict.fromkeys(specs))
    todo = [spec for spec in unique if spec.key not in table]
    report.skipped = len(unique) - len(todo)
    for spec in unique:
        if spec.key in table and on_block:
            on_block(spec, False)
    reference = None
    if todo and steadiness is not None:
        tick = time.perf_counter()
        spec = reference_spec(unique)  # of every block asked for, so a resumed build keeps its reference
        reference = ReferenceBlock(profiler, spec, settings, batch, stored_baseline(table, spec.key),
                                   tracks_fastest=True)
        report.timing_s += time.perf_counter() - tick
        report.reference_key = reference.key
    try:
        baseline_used = {}
        for spec in todo:
            baseline_used[spec] = reference.baseline if reference else 0.0
            _measure_one(spec, profiler, table, settings, reference, steadiness, report, on_unsteady)
            report.measured += 1
            if on_block:
                on_block(spec, True)
        if reference:  # rows counted against a baseline later found too slow are measured again (later rows win)
            stale = [spec for spec, used in baseline_used.items()
                     if used > reference.baseline * (1 + steadiness.tolerance)]
            for spec in stale:
                _measure_one(spec, profiler, table, settings, reference, steadiness, report, on_unsteady)
            report.retimed = len(stale)
    finally:
        if reference:
            report.reference_ms = reference.baseline
            remember_reference(table, reference)
            reference.close()
    report.wall_s = time.perf_counter() - start
    return report


def _measure_one(spec: BlockSpec, profiler: Profiler, table: LatencyTable, settings: MeasureSettings,
                 reference: ReferenceBlock | None, steadiness: Steadiness | None, report: ProfileReport,
                 on_unsteady: Callable[[str, float], None] | None) -> None:
    """Compile and time one block (beside the reference when there is one) and append its row."""
    tick = time.perf_counter()
    artifact = profiler.compile(spec.build(), (profiler.device.batch, *spec.input_shape))
    tock = time.perf_counter()
    meta = artifact.meta
    if reference:
        timing, ratio = reference.time(artifact, settings, steadiness)
        if not steadiness.steady(ratio):
            meta = {**meta, "reference_ratio": f"{ratio:.3f}"}
            report.unsteady.append(UnsteadyBlock(spec.key, ratio))
            if on_unsteady:
                on_unsteady(spec.key, ratio)
    else:
        timing = profiler.time(artifact, settings)
    report.compile_s += tock - tick
    report.timing_s += time.perf_counter() - tock
    report.timed_ms += timing.median * timing.n
    table.append(spec, timing, note=_note(meta))


def _note(meta: dict) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(meta.items()))


@contextmanager
def measuring(device: Device, lut_path: Path, settings: MeasureSettings = MeasureSettings(), force: bool = False,
              must_exist: bool = False) -> Iterator[tuple[Profiler, LatencyTable]]:
    """A profiler for `device` and its table opened for appending (fingerprints checked), the table's lock held
    throughout: a second command writing the same table refuses at once instead of measuring it twice."""
    if must_exist:
        LatencyTable.load(lut_path)  # one-line error when the table was never built
    with table_lock(lut_path), get_profiler(device) as profiler:
        yield profiler, LatencyTable.open(lut_path, table_meta(profiler, settings), force=force)


def build_lut(device: Device, specs: Sequence[BlockSpec], lut_path: Path,
              settings: MeasureSettings = MeasureSettings(), force: bool = False,
              steadiness: Steadiness | None = BUILD_STEADINESS,
              on_block: Callable[[BlockSpec, bool], None] | None = None,
              on_unsteady: Callable[[str, float], None] | None = None) -> tuple[ProfileReport, LatencyTable]:
    """Open (or create) the device's table at `lut_path` and measure what it lacks of `specs`."""
    with measuring(device, lut_path, settings, force) as (profiler, table):
        report = profile_specs(specs, profiler, table, settings, steadiness, on_block, on_unsteady)
    return report, table
