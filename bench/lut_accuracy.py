"""How well a device's LUT predicts whole networks, before and after calibration.

For each device and resolution: build (or resume) the LUT of the space, fit the calibration on a few random
networks, then measure held-out random networks plus the published ones end to end and compare. A network's calls
count only while a reference block beside them runs at its LUT speed (lut/steady.py; up to 30 s of waiting); the
"steady machine" row keeps the networks that got enough such calls, so a noisy neighbour is told apart from a wrong
table.

    python bench/lut_accuracy.py --device cpu --space fbnet --resolution 224 --resolution 128
    python bench/lut_accuracy.py --device tflite-cpu --quick
    python bench/lut_accuracy.py --cross-space --resolution 224 --samples 20   # every chain space, one LUT

`--cross-space` calibrates every chain space on the device's own LUT as a user would and predicts each space's
held-out random networks with its own calibration and every published network with its home space's calibration
(the plain sum where it has none): bench/cross_space.py, whose JSON keeps every network.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table
from search_common import machine, provenance, report

from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.lut.calibrate import calibrate_device
from hwnas.lut.steady import Steadiness
from hwnas.lut.validate import accuracy_metrics, validate_device, write_report
from hwnas.spaces.catalog import SPACES, get_space


def run(device_name: str, space_name: str, resolution: int, samples: int, calibration_networks: int,
        lut_dir: Path, published: bool, console: Console) -> dict:
    device = get_device(device_name)
    space = get_space(space_name, resolution)
    lut = lut_dir / f"{device_name}.csv"
    start = time.perf_counter()
    report, _ = build_lut(device, space.specs(), lut)
    console.print(f"{device_name} @{resolution}: LUT ready ({report.measured} measured, {report.skipped} reused) "
                  f"in {time.perf_counter() - start:.0f} s")
    unsteady: list[tuple[str, float]] = []

    def note_unsteady(name: str, ratio: float) -> None:
        unsteady.append((name, ratio))
        console.print(f"  {name}: timed while the reference block ran {ratio:.2f}x its LUT time")

    fit = calibrate_device(device, space, lut, calibration_networks, on_unsteady=note_unsteady)
    console.print(f"  calibration: measured ≈ {fit.scale:.4f} · sum + {fit.offset_ms:.4f} ms")
    validation = validate_device(device, space, lut, samples, seed=0, published=published,
                                 on_network=lambda name: None, on_unsteady=note_unsteady)
    files = write_report(validation, lut_dir / f"validate-{device_name}-{space_name}-{resolution}",
                         f"{device_name}: {space_name} @{resolution}px")
    random_only = [r for r in validation.results if r.kind == "random"]
    steady = [r for r in random_only if Steadiness().steady(r.reference_ratio)]
    held_out = {
        "calibrated": accuracy_metrics([r.predicted_ms for r in random_only], [r.measured.median for r in random_only]),
        "uncalibrated": accuracy_metrics([r.block_sum_ms for r in random_only],
                                         [r.measured.median for r in random_only]),
        "calibrated, steady machine": accuracy_metrics([r.predicted_ms for r in steady],
                                                       [r.measured.median for r in steady]),
    }
    return {"device": device_name, "space": space_name, "resolution": resolution,
            "calibration": fit.to_dict(), "held_out_random": held_out,
            "all_networks": {"calibrated": validation.calibrated, "uncalibrated": validation.uncalibrated},
            "published": [r.to_row() for r in validation.results if r.kind == "published"],
            "files": {k: str(v) for k, v in files.items()}, "wall_s": time.perf_counter() - start,
            "timed_off_steady": [{"network": name, "reference_ratio": ratio} for name, ratio in unsteady],
            "reference_ratios": [r.reference_ratio for r in validation.results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", action="append", help="device name (repeatable; default cpu)")
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--resolution", type=int, action="append", help="repeatable; default 224 and 128")
    parser.add_argument("--samples", type=int, default=50, help="held-out random networks")
    parser.add_argument("--calibration-networks", type=int, default=10)
    parser.add_argument("--no-published", action="store_true")
    parser.add_argument("--lut-dir", type=Path, default=Path("bench/results/luts"))
    parser.add_argument("--quick", action="store_true", help="64 px, 8 held-out networks, 4 for calibration")
    parser.add_argument("--cross-space", action="store_true", help="every chain space on luts/DEVICE.csv "
                        "(see above)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/lut_accuracy.json"))
    args = parser.parse_args()
    if args.cross_space:
        cross_space_rows(args)
        return
    if args.quick:
        args.resolution, args.samples, args.calibration_networks = args.resolution or [64], 8, 4
    console = Console()
    results = [run(device, args.space, resolution, args.samples, args.calibration_networks, args.lut_dir,
                   not args.no_published, console)
               for device in (args.device or ["cpu"]) for resolution in (args.resolution or [224, 128])]
    table = Table("device", "space @px", "prediction", "held-out n", "MAPE %", "within ±10%", "max err %",
                  "Kendall tau", title="LUT accuracy on held-out random networks")
    for result in results:
        for label in ("uncalibrated", "calibrated", "calibrated, steady machine"):
            metrics = result["held_out_random"][label]
            table.add_row(result["device"], f"{result['space']} @{result['resolution']}", label, str(metrics["n"]),
                          f"{metrics['mape_pct']:.2f}", f"{100 * metrics['within_10pct']:.0f}%",
                          f"{metrics['max_error_pct']:.1f}", f"{metrics['kendall_tau']:.3f}")
    console.print(table)
    published = Table("device", "@px", "network", "predicted ms", "measured ms", "error %",
                      title="published networks (calibrated prediction)")
    for result in results:
        for row in result["published"]:
            published.add_row(result["device"], str(result["resolution"]), row["name"], f"{row['predicted_ms']:.3f}",
                              f"{row['measured_ms']:.3f}", f"{row['error_pct']:+.1f}")
    console.print(published)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    lut = args.lut_dir / f"{(args.device or ['cpu'])[0]}.csv"
    args.out.write_text(json.dumps({"machine": machine(), "provenance": provenance(lut), "results": results},
                                   indent=2, default=str) + "\n")
    console.print(f"wrote {args.out}")


def cross_space_rows(args: argparse.Namespace) -> None:
    """The cross-space rows: per space, its held-out random networks under its own calibration; then the published
    networks of every space under their home space's calibration."""
    from cross_space import measure

    resolution = (args.resolution or [224])[0]
    device = (args.device or ["cpu"])[0]
    spaces = list(SPACES)
    rows, summary, lut = measure(device, None, spaces, resolution, 10, args.samples, args.calibration_networks)
    table = [{"space": space, "networks": "held-out random, own calibration", **summary[space]["own"]}
             for space in spaces]
    table.append({"space": "all", "networks": "published, home space's calibration (else plain sum)",
                  **summary["published"]["as_a_user_would"]})
    report(f"cross-space LUT accuracy on {device} at {resolution} px (measured with the steady method)",
           ["space", "networks", "n", "mape_pct", "within_10pct", "max_error_pct", "kendall_tau"], table, args.out,
           {"resolution": resolution, "device": device, "summary": summary, "networks": rows}, lut=lut)


if __name__ == "__main__":
    main()
