"""Where the time of building a LUT goes: export, session creation, warm-up, timed calls, the rest.

Builds the full LUT of a space into a fresh temporary table and compares its wall time with the sum of
(median latency x timed calls), the part no profiler can avoid. Then builds it again as `hwnas profile` does, with
a reference block run beside every block (lut/steady.py), and reports what that costs.

    python bench/profile_throughput.py --device cpu --space fbnet --resolution 224
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from search_common import machine, provenance

from hwnas.device import get_device
from hwnas.lut.build import measuring, profile_specs
from hwnas.profilers.base import MeasureSettings, Timing
from hwnas.spaces.catalog import get_space


class _SessionClock:
    """Wraps a profiler's session factory (where it has one) to time runtime session creation separately."""

    def __init__(self, profiler):
        self.seconds = 0.0
        self.calls = 0
        self.timed_sum_ms = 0.0
        if hasattr(profiler, "session"):
            create = profiler.session

            def timed_session(artifact):
                start = time.perf_counter()
                try:
                    return create(artifact)
                finally:
                    self.seconds += time.perf_counter() - start
                    self.calls += 1

            profiler.session = timed_session
        measure = profiler.time

        def timed_measure(artifact, settings=MeasureSettings()) -> Timing:
            timing = measure(artifact, settings)
            self.timed_sum_ms += timing.mean * timing.n
            return timing

        profiler.time = timed_measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--quick", action="store_true", help="64 px")
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile_throughput.json"))
    args = parser.parse_args()
    resolution = 64 if args.quick else args.resolution
    space = get_space(args.space, resolution)
    specs = space.specs()
    settings = MeasureSettings()
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        with measuring(get_device(args.device), Path(folder) / "lut.csv", settings) as (profiler, table):
            clock = _SessionClock(profiler)
            report = profile_specs(specs, profiler, table, settings, steadiness=None)  # steady checks off: pure parts
        wall = time.perf_counter() - start
        start = time.perf_counter()
        with measuring(get_device(args.device), Path(folder) / "steady.csv", settings) as (profiler, steady_table):
            steady = profile_specs(specs, profiler, steady_table, settings)
        steady_wall = time.perf_counter() - start
    timed_median_s = report.timed_ms / 1e3
    parts = {
        "export / conversion": report.compile_s,
        "session creation": clock.seconds,
        "timed calls (sum of samples)": clock.timed_sum_ms / 1e3,
        "warm-up, CI checks, Python": report.timing_s - clock.seconds - clock.timed_sum_ms / 1e3,
        "row writes, block building, other": wall - report.compile_s - report.timing_s,
    }
    table = Table("part", "seconds", "share", title=f"building the {args.space} LUT @{resolution}px on {args.device}: "
                                                      f"{len(specs)} blocks")
    for name, seconds in parts.items():
        table.add_row(name, f"{seconds:.2f}", f"{100 * seconds / wall:.1f}%")
    table.add_row("wall time", f"{wall:.2f}", "100%")
    console = Console()
    console.print(table)
    ratio = wall / timed_median_s
    console.print(f"Σ(median × timed calls) = {timed_median_s:.2f} s; wall / that = {ratio:.2f}x")
    console.print(f"as `hwnas profile` builds it (reference {steady.reference_key} beside every block): "
                  f"{steady_wall:.2f} s, {steady_wall / wall:.2f}x the plain build; {len(steady.unsteady)} block(s) "
                  "timed off the reference's speed")
    result = {"device": args.device, "space": args.space, "resolution": resolution, "blocks": len(specs),
              "wall_s": wall, "sum_median_x_calls_s": timed_median_s, "wall_over_timed": ratio, "parts_s": parts,
              "steady_build": {"wall_s": steady_wall, "over_plain": steady_wall / wall,
                               "reference": steady.reference_key, "unsteady_blocks": len(steady.unsteady)}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**result, "machine": machine(), "provenance": provenance()}, indent=2,
                                   default=str) + "\n")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
