"""`hwnas lut show | predict | calibrate | validate`: inspect a latency table, use it, and check it is right."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

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
    load_arch,
    print_json,
    progress_bar,
    resolve_lut,
    warn_unsteady,
)
from hwnas.units import check_classes, check_range, check_resolution

lut_app = typer.Typer(no_args_is_help=True, help="Inspect, use, calibrate and validate latency tables.")

SpaceOption = typer.Option("fbnet", "--space", "-s", help="Search space.")
ResolutionOption = typer.Option(None, "--resolution", "-r", help="Input resolution (default: the space's).")
ClassesOption = typer.Option(1000, "--classes", help="Classifier outputs.")


def register(app: typer.Typer) -> None:
    app.add_typer(lut_app, name="lut")


@lut_app.command("show")
@handles_errors
def show(device: str = DeviceName, lut: Path = LutPath, lut_dir: Path = LutDir,
         space: str = typer.Option(None, "--space", "-s", help="Also report coverage and latency range of a space."),
         resolution: int = ResolutionOption, classes: int = ClassesOption, devices_file: Path = DevicesFile,
         as_json: bool = JsonFlag) -> None:
    """Summarise a LUT: rows, setup fingerprint, calibrations, and (with --space) coverage and latency range."""
    check_resolution(resolution, "--resolution")
    check_classes(classes, "--classes")
    from hwnas.device import get_device
    from hwnas.lut import LatencyModel, LatencyTable
    from hwnas.lut.device_table import device_lut_path

    table = LatencyTable.load(device_lut_path(get_device(device, devices_file), lut, lut_dir))
    summary = {"lut": str(table.path), "rows": len(table), "duplicates": table.duplicates, "unit": table.meta["unit"],
               "device": table.meta.get("device"), "fingerprint": table.meta.get("fingerprint"),
               "calibration": table.meta.get("calibration") or {}}
    if space:
        from hwnas.spaces.files import resolve_space as get_space  # catalog, cell spaces or a YAML file

        target = get_space(space, resolution, classes)
        keys = [spec.key for spec in target.specs()]
        missing = table.missing(keys)
        summary["space"] = {"name": target.name, "resolution": target.resolution, "blocks": len(keys),
                            "missing": missing}
        if not missing:
            from hwnas.budget.costs import space_range_ms

            low, high = space_range_ms(target, LatencyModel(table, space=target.name))
            summary["space"]["range_ms"] = [low, high]
    if as_json:
        print_json(summary)
        return
    fingerprint = summary["fingerprint"] or {}
    console.print(f"{summary['lut']}: {summary['rows']} blocks ({summary['unit']}), device {summary['device']}",
                  markup=False, highlight=False)
    if summary["duplicates"]:
        console.print(f"{summary['duplicates']} row(s) measure a block again (a retime or a second profile): the "
                      "latest row of each block is used", markup=False, highlight=False)
    console.print("setup: " + ", ".join(f"{k}={v}" for k, v in fingerprint.items()), markup=False, highlight=False)
    for key, fit in summary["calibration"].items():
        from hwnas.lut.schema import parse_calibration_key

        where = parse_calibration_key(key)
        label = (f"calibration of {where[0]} @{where[1]}px" if where else
                 f"calibration @{key}px (made before calibrations named their space: not applied; refit it)")
        mape = fit.get("fit_mape_pct")
        console.print(f"{label}: measured ≈ {fit['scale']:.4f} · sum + {fit.get('offset_ms', 0.0):.4f} ms "
                      f"({fit.get('networks', '?')} networks"
                      + (f", fit MAPE {mape:.2f}%)" if mape is not None else ")"),
                      markup=False, highlight=False)
    if space:
        info = summary["space"]
        console.print(f"space {info['name']} @{info['resolution']}px: {info['blocks'] - len(info['missing'])}/"
                      f"{info['blocks']} blocks measured")
        if "range_ms" in info:
            console.print(f"latency range: {info['range_ms'][0]:.3f} .. {info['range_ms'][1]:.3f} ms")


@lut_app.command("predict")
@handles_errors
def predict(arch: str = typer.Argument(..., help="Architecture string, published name, arch.json or run folder."),
            device: str = DeviceName, lut: Path = LutPath, lut_dir: Path = LutDir,
            resolution: int = typer.Option(None, "--resolution", "-r", help="Override the input resolution."),
            classes: int = typer.Option(None, "--classes", help="Override the classifier outputs."),
            breakdown: bool = typer.Option(False, "--breakdown", help="Print each block's latency."),
            space: str = typer.Option(None, "--space", "-s", help="Correct with the calibration fitted on this "
                                      "space (default: the run's space for a run folder or arch.json; else none)."),
            devices_file: Path = DevicesFile, force: bool = ForceFlag, as_json: bool = JsonFlag) -> None:
    """Predict an architecture's latency on DEVICE from the table that serves it (sum of blocks + the calibration
    of the network's space)."""
    check_resolution(resolution, "--resolution")
    check_classes(classes, "--classes")
    from hwnas.cli.common import arch_space
    from hwnas.device import get_device
    from hwnas.lut.device_table import open_device_model

    network = load_arch(arch, resolution, classes)
    space = space or arch_space(arch)
    model = open_device_model(get_device(device, devices_file), lut, lut_dir, space=space, force=force)
    specs = network.specs()
    model.table.require([spec.key for spec in specs], f"hwnas profile --device {device} --arch '{arch}'" +
                        (f" --lut {lut}" if lut else ""))
    blocks = model.table.latencies([spec.key for spec in specs], force)
    result = {"arch": network.to_string(), "device": device, "predicted_ms": model.predict(network),
              "block_sum_ms": float(blocks.sum()), "space": space,
              "calibrated": network.resolution in model.calibrations,
              "blocks": [{"key": s.key, "ms": float(ms)} for s, ms in zip(specs, blocks)]}
    if as_json:
        print_json(result)
        return
    if breakdown:
        table = Table("block", "ms")
        for row in result["blocks"]:
            table.add_row(row["key"], f"{row['ms']:.4f}")
        console.print(table)
    note = (f" (calibrated on {space} @{network.resolution}px)" if result["calibrated"] else
            f" (plain sum of blocks: no calibration of {space} @{network.resolution}px)" if space else
            " (plain sum of blocks: pass --space to correct with a space's calibration)")
    typer.echo(f"{result['predicted_ms']:.3f} ms on {device}{note}")


def _networks_space(space: str, resolution: int | None, classes: int | None, count: int, count_flag: str):
    """The space whose networks `lut calibrate` and `lut validate` measure, once the options are checked."""
    check_resolution(resolution, "--resolution")
    check_classes(classes, "--classes")
    check_range(count, count_flag, 1)
    from hwnas.spaces.files import resolve_space  # catalog, cell spaces or a YAML file

    return resolve_space(space, resolution, classes)


@lut_app.command("calibrate")
@handles_errors
def calibrate(device: str = DeviceName, space: str = SpaceOption, resolution: int = ResolutionOption,
              classes: int = ClassesOption,
              networks: int = typer.Option(10, "--networks", "-n", help="Random networks to measure and fit on."),
              seed: int = typer.Option(1000, help="Seed of the calibration networks (validation excludes them)."),
              steady_wait: float = SteadyWait, devices_file: Path = DevicesFile, lut: Path = LutPath,
              lut_dir: Path = LutDir, force: bool = ForceFlag, as_json: bool = JsonFlag) -> None:
    """Fit what isolated blocks miss on whole measured networks, and store it with the LUT."""
    target = _networks_space(space, resolution, classes, networks, "--networks")
    from hwnas.device import get_device
    from hwnas.lut.calibrate import calibrate_device
    with progress_bar(quiet=as_json) as progress:
        task = progress.add_task(f"calibrating {device}", total=networks)
        fit = calibrate_device(get_device(device, devices_file), target, resolve_lut(device, lut, lut_dir), networks,
                               seed, force, on_network=lambda name: progress.advance(task),
                               steady_wait_s=steady_wait, on_unsteady=warn_unsteady)
    if as_json:
        print_json({"resolution": target.resolution, **fit.to_dict()})
        return
    console.print(f"{target.name} @{target.resolution}px: measured ≈ {fit.scale:.4f} · sum + {fit.offset_ms:.4f} ms "
                  f"(fit on {fit.networks} networks, MAPE on them {fit.fit_mape_pct:.2f}%)")


@lut_app.command("validate")
@handles_errors
def validate(device: str = DeviceName, space: str = SpaceOption, resolution: int = ResolutionOption,
             classes: int = ClassesOption,
             samples: int = typer.Option(50, "--samples", "-n", help="Random held-out networks to measure."),
             seed: int = typer.Option(0, help="Seed of the random networks."),
             published: bool = typer.Option(True, "--published/--no-published",
                                            help="Also measure the published reference networks."),
             out: Path = typer.Option(None, "--out",
                                      help="Report folder (default: LUT_DIR/validate-DEVICE-SPACE-RES)."),
             steady_wait: float = SteadyWait, devices_file: Path = DevicesFile, lut: Path = LutPath,
             lut_dir: Path = LutDir, force: bool = ForceFlag, as_json: bool = JsonFlag) -> None:
    """Measure whole networks end to end and report predicted vs measured (MAPE, ±10%, max error, Kendall tau)."""
    target = _networks_space(space, resolution, classes, samples, "--samples")
    from hwnas.device import get_device
    from hwnas.lut.validate import validate_device, write_report
    path = resolve_lut(device, lut, lut_dir)
    with progress_bar(quiet=as_json) as progress:
        from hwnas.lut.validate import published_networks

        total = samples + (len(published_networks(target)) if published else 0)
        task = progress.add_task(f"measuring networks on {device}", total=total)
        report = validate_device(get_device(device, devices_file), target, path, samples, seed, published, force,
                                 on_network=lambda name: progress.update(task, advance=1, description=name),
                                 steady_wait_s=steady_wait, on_unsteady=warn_unsteady)
    folder = out or lut_dir / f"validate-{device}-{target.name}-{target.resolution}"
    files = write_report(report, folder, f"{device}: {target.name} @{target.resolution}px")
    if as_json:
        print_json({**report.to_dict(), "files": {k: str(v) for k, v in files.items()}})
        return
    table = Table("prediction", "networks", "MAPE %", "within ±10%", "max err %", "mean err %", "Kendall tau")
    for label, metrics in (("sum of blocks", report.uncalibrated), ("calibrated", report.calibrated)):
        table.add_row(label, str(metrics["n"]), f"{metrics['mape_pct']:.2f}", f"{100 * metrics['within_10pct']:.0f}%",
                      f"{metrics['max_error_pct']:.1f}", f"{metrics['mean_error_pct']:+.2f}",
                      f"{metrics['kendall_tau']:.3f}")
    console.print(table)
    if not report.calibration.get(str(target.resolution)):
        console.print(f"no calibration of {target.name} at {target.resolution}px yet: run `hwnas lut calibrate "
                      f"--device {device} "
                      f"--space {target.name} --resolution {target.resolution}` first")
    console.print(f"report: {folder}")
