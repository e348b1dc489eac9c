"""`hwnas profile`: measure every block of one or more spaces on a device into its LUT (resumable)."""

from __future__ import annotations

from dataclasses import replace
from numbers import Real
from pathlib import Path

import typer

from hwnas.cli.common import (
    DeviceName,
    DevicesFile,
    ForceFlag,
    JsonFlag,
    LutDir,
    LutPath,
    SteadyWait,
    console,
    handles_errors,
    lazy_task,
    load_arch,
    print_json,
    progress_bar,
    resolve_lut,
)
from hwnas.units import check_classes, check_range, check_resolution


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)


@handles_errors
def profile(
    device: str = DeviceName,
    space: list[str] = typer.Option(None, "--space", "-s", help="Search space(s) to cover (repeatable; default: "
                                    "fbnet unless --arch is given)."),
    arch: list[str] = typer.Option(None, "--arch", "-a", help="Also cover the blocks of a network: architecture "
                                   "string, published name, arch.json or run folder (repeatable)."),
    resolution: int = typer.Option(None, "--resolution", "-r", help="Input resolution (default: the space's)."),
    classes: int = typer.Option(None, "--classes", help="Classifier outputs (the head block's shape; default: 1000 "
                                "for spaces, a network's own for --arch)."),
    devices_file: Path = DevicesFile,
    lut: Path = LutPath,
    lut_dir: Path = LutDir,
    target_ci: float = typer.Option(0.02, help="Stop repeating once the median's relative 95% CI is below this."),
    max_repeats: int = typer.Option(1000, help="Cap on timed calls per block."),
    budget: float = typer.Option(3.0, help="Cap on seconds of timing per block."),
    steady_wait: float = SteadyWait,
    force: bool = ForceFlag,
    as_json: bool = JsonFlag,
) -> None:
    """Measure each block of the space(s) and network(s) on DEVICE and append it to the LUT; rerun to resume."""
    check_resolution(resolution, "--resolution")
    check_classes(classes, "--classes")
    check_range(max_repeats, "--max-repeats", 1)
    check_range(target_ci, "--target-ci", 0, kind=Real)
    check_range(budget, "--budget", 0, kind=Real)
    from hwnas.device import get_device
    from hwnas.lut.build import build_lut
    from hwnas.lut.steady import BUILD_STEADINESS
    from hwnas.profilers.base import MeasureSettings
    from hwnas.spaces.files import resolve_space as get_space  # catalog, cell spaces or a YAML file

    target = get_device(device, devices_file)
    spaces = [get_space(name, resolution, classes or 1000) for name in (space or ([] if arch else ["fbnet"]))]
    networks = [load_arch(text, resolution, classes) for text in arch or ()]
    specs = list(dict.fromkeys([*(spec for s in spaces for spec in s.specs()),
                                *(spec for n in networks for spec in n.specs())]))
    path = resolve_lut(device, lut, lut_dir)
    settings = MeasureSettings(target_ci=target_ci, max_repeats=max_repeats, budget_s=budget)
    with progress_bar(quiet=as_json) as progress:
        try:
            report, table = build_lut(target, specs, path, settings, force,
                                      replace(BUILD_STEADINESS, wait_s=steady_wait),
                                      lazy_task(progress, f"profiling {device} ({path})", len(specs)))
        except KeyboardInterrupt:
            console.print(f"interrupted: rows measured so far are saved in {path}; rerun the same command to resume")
            raise typer.Exit(130) from None
    summary = {"lut": str(path), "device": device, "spaces": [s.name for s in spaces],
               "archs": [n.to_string() for n in networks], "blocks": len(specs),
               **report.to_dict(), "rows": len(table)}
    if as_json:
        print_json(summary)
        return
    console.print(f"{path}: measured {report.measured}, already there {report.skipped}, "
                  f"{len(table)} rows in {report.wall_s:.1f} s")
    if report.retimed:
        console.print(f"{report.retimed} block(s) measured again: the machine ran faster later than when they were "
                      "first timed", highlight=False)
    if report.unsteady:
        worst = max(report.unsteady, key=lambda u: abs(u.ratio - 1))
        console.print(f"[yellow]warning:[/yellow] {len(report.unsteady)} block(s) timed while the reference block "
                      f"{report.reference_key} ran off its fastest time (worst {worst.ratio:.2f}x, {worst.key}); the "
                      "machine was busy or throttled, and their rows (note: reference_ratio) may read slow",
                      highlight=False)
