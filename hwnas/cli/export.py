"""`hwnas export`: write a searched (or any) network as ONNX, TFLite, Core ML or TensorRT files, prove each
computes what PyTorch computes, and report sizes, hashes and latency in export.json."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from hwnas.cli.common import (
    DevicesFile,
    JsonFlag,
    LutDir,
    console,
    fail,
    handles_errors,
    print_json,
    printing_to,
    progress_bar,
)
from hwnas.units import check_classes, check_range, check_resolution


def register(app: typer.Typer) -> None:
    app.command("export")(export)


def _split(values: list[str] | None) -> tuple[str, ...]:
    """`--to onnx,tflite --to coreml` -> ('onnx', 'tflite', 'coreml')."""
    return tuple(item.strip() for value in values or () for item in value.split(",") if item.strip())


@handles_errors
def export(
    run: Path = typer.Argument(None, help="Run directory (runs/NAME) holding arch.json and, after training, "
                                          "trained.pt.", file_okay=False),
    arch: str = typer.Option(None, "--arch", help="Instead of a run: an architecture string, an arch.json, or a "
                                                  "published network's name (e.g. mobilenetv2, fbnet_c)."),
    to: list[str] = typer.Option(["onnx"], "--to", help="Formats, comma-separated: onnx, tflite, coreml, tensorrt."),
    out: Path = typer.Option(None, "--out", help="Folder for the files and export.json (default: RUN/export or "
                                                 "exports/NAME).", file_okay=False),
    precision: list[str] = typer.Option(None, "--precision", help="fp32, fp16, int8 (comma-separated); each "
                                        "format writes those it supports (default: Core ML/TensorRT fp16, else fp32)."),
    resolution: int = typer.Option(None, "--resolution", "-r", help="Input resolution (default: the architecture's)."),
    classes: int = typer.Option(None, "--classes", help="Classifier outputs for an untrained --arch."),
    device: list[str] = typer.Option(None, "--device", "-d", help="Predict latency on this device from its LUT "
                                     "(repeatable; default: the run's device). A tensorrt device also gets the plan."),
    devices_file: Path = DevicesFile,
    lut_dir: Path = LutDir,
    measure: str = typer.Option(None, "--measure", help="Also measure the exported network on this device."),
    data: str = typer.Option(None, "--data", help="Dataset for int8 calibration and validation (default: the "
                                                  "run's; digits, cifar10:PATH, an image folder)."),
    calibration_size: int = typer.Option(100, help="Images to calibrate int8 on."),
    validation_size: int = typer.Option(500, help="Validation images for the int8 accuracy drop."),
    opset: int = typer.Option(None, "--opset", help="ONNX opset (default: hwnas' tested one)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="ONNX with a dynamic batch dimension."),
    simplify: bool = typer.Option(True, "--simplify/--no-simplify", help="Simplify the ONNX graph with onnxslim."),
    channels_last: bool = typer.Option(False, "--channels-last", help="TFLite taking NHWC input (TFLite's layout)."),
    deployment_target: str = typer.Option("iOS16", "--deployment-target", help="Core ML minimum deployment target."),
    seed: int = typer.Option(0, help="Seed of the random initialisation (untrained networks) and random images."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every file, even those an earlier export can reuse."),
    verbose: bool = typer.Option(False, "--verbose", help="Also show what the converters and runtimes print "
                                                          "(warnings, logs, progress bars)."),
    as_json: bool = JsonFlag,
) -> None:
    """Export RUN (or --arch) to deployable files, check each against PyTorch, write export.json."""
    check_resolution(resolution, "--resolution")
    check_classes(classes, "--classes")
    check_range(calibration_size, "--calibration-size", 1)
    check_range(validation_size, "--validation-size", 1)
    from hwnas.export.pipeline import ExportRequest, run_export
    from hwnas.export.third_party_output import captured_third_party_output
    from hwnas.onnx_io import DEFAULT_OPSET

    request = ExportRequest(
        run=str(run) if run is not None else None, arch=arch, formats=_split(to),
        precisions=_split(precision) or None, out=out, resolution=resolution, num_classes=classes,
        devices=_split(device), devices_file=devices_file, lut_dir=lut_dir, measure=measure, data=data,
        calibration_size=calibration_size, validation_size=validation_size, opset=opset or DEFAULT_OPSET,
        dynamic_batch=dynamic_batch, simplify=simplify, channels_last=channels_last,
        deployment_target=deployment_target, seed=seed, fresh=fresh)
    with progress_bar(quiet=as_json) as progress:
        task = progress.add_task("export", total=None)
        third_party = None  # unset when the capture itself could not start
        try:
            with captured_third_party_output() as third_party, printing_to(third_party.terminal):
                report = run_export(request, lambda message: progress.update(task, description=f"export: {message}"))
        finally:
            if verbose and third_party is not None and third_party.text:  # as printed, under the progress bar
                typer.echo(third_party.text.rstrip("\n"), err=True)
        progress.update(task, total=1, completed=1, description="export: done")
    if as_json:
        print_json(report.data)
    else:
        _print_summary(report)
    for warning in report.data["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    errors, warnings = report.failures()
    for warning in warnings:
        console.print(f"[yellow]parity (untrained network):[/yellow] {escape(warning)}", highlight=False)
    if errors:
        fail(f"parity check failed ({report.path}): " + "; ".join(errors))


def _print_summary(report) -> None:
    data = report.data
    table = Table("file", "precision", "size", "rel. error", "check", title=f"{data['name']}: {report.path}")
    notes = []
    for entry in data["artifacts"]:
        parity = entry.get("parity") or {}
        if "skipped" in parity:
            error, check = "-", "skipped (see below)"
            notes.append(f"{entry['file']}: numeric check skipped: {parity['skipped']}")
        else:
            error = f"{parity['relative_error']:.1e}"
            check = {True: "[green]ok[/green]", False: "[red]over tolerance[/red]", None: "no tolerance"}[
                parity["passed"]]
        accuracy = entry.get("accuracy") or {}
        if "drop_pct_points" in accuracy:
            check += f", top-1 {100 * accuracy['int8_top1']:.1f}% (drop {accuracy['drop_pct_points']:.1f} pt)"
        table.add_row(entry["file"], entry["precision"], _size(entry["bytes"]), error, check)
    console.print(table)
    for note in notes:
        console.print(escape(note), highlight=False)
    for prediction in data["latency"]["predicted"]:
        if "predicted_ms" in prediction:
            console.print(f"predicted on {prediction['device']}: {prediction['predicted_ms']:.3f} ms/image "
                          f"({prediction['lut']})")
        else:
            console.print(f"[yellow]no prediction on {prediction['device']}:[/yellow] {escape(prediction['error'])}",
                          highlight=False)
    measured = data["latency"]["measured"]
    if measured and "error" in measured:
        console.print(f"[yellow]not measured on {measured['device']}:[/yellow] {escape(measured['error'])}",
                      highlight=False)
    elif measured:
        console.print(f"measured on {measured['device']}: {measured['median_ms']:.3f} ms/image (95% CI upper "
                      f"{measured['ci_upper_ms']:.3f}; {measured['timed']}; the LUT's steady method)", highlight=False)


def _size(count: int) -> str:
    return f"{count / 1e6:.2f} MB" if count >= 1e5 else f"{count / 1e3:.1f} kB"
