"""One export: resolve the network, fold BatchNorm, write each requested format and precision, check each file
against PyTorch, predict (and optionally measure) latency, and keep `export.json` current throughout.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas import __version__
from hwnas.config import DEFAULT_LUT_DIR
from hwnas.device import get_device
from hwnas.errors import ConfigError, HwnasError
from hwnas.export import exporter_module, get_exporter
from hwnas.export.common import PRECISIONS, CheckSkipped, UnsupportedBlock, parity
from hwnas.export.fold import fold_batchnorm
from hwnas.export.images import ImageSource, calibration_images, parity_images, validation_set
from hwnas.export.latency import measure_latency, predict_latency
from hwnas.export.report import ExportReport, file_facts, inputs_key
from hwnas.export.source import SETTLE_IMAGES, ExportSource, build_model, resolve_source
from hwnas.onnx_io import DEFAULT_OPSET


@dataclass(frozen=True)
class ExportRequest:
    """Everything `hwnas export` needs; each field is one flag."""

    run: str | None = None  # a run directory (runs/NAME) ...
    arch: str | None = None  # ... or an architecture string, arch.json or published name
    formats: tuple[str, ...] = ("onnx",)
    precisions: tuple[str, ...] | None = None  # None: each format's default (Core ML and TensorRT fp16, else fp32)
    out: Path | None = None  # default: RUN/export, or exports/NAME
    resolution: int | None = None  # export at another input size than the architecture's
    num_classes: int | None = None  # classifier width for an untrained architecture
    devices: tuple[str, ...] = ()  # predict latency on each from LUT_DIR/DEVICE.csv (default: the run's device)
    devices_file: Path | None = None
    lut_dir: Path = DEFAULT_LUT_DIR
    measure: str | None = None  # measure the exported network on this device
    data: str | None = None  # dataset for int8 calibration and validation (default: the run's)
    calibration_size: int = 100  # images to calibrate int8 on
    validation_size: int = 500  # validation images for the int8 accuracy drop
    parity_size: int = 4  # images each file must reproduce PyTorch on
    opset: int = DEFAULT_OPSET
    dynamic_batch: bool = False  # ONNX only
    channels_last: bool = False  # TFLite takes NHWC input
    simplify: bool = True  # ONNX graph simplification with onnxslim
    deployment_target: str = "iOS16"  # Core ML minimum deployment target
    seed: int = 0  # random initialisation and random images
    fresh: bool = False  # redo every file even when an earlier export can be reused


def plan_jobs(formats: tuple[str, ...], precisions: tuple[str, ...] | None) -> list[tuple[str, str]]:
    """(format, precision) pairs in build order: fp32 first (fp16/int8 TFLite start from it), ONNX before TensorRT."""
    unknown = [p for p in precisions or () if p not in PRECISIONS]
    if unknown:
        raise ConfigError(f"--precision '{unknown[0]}' is not one of {', '.join(PRECISIONS)}")
    if not formats:
        raise ConfigError("--to names no format (onnx, tflite, coreml, tensorrt)")
    jobs = []
    for name in sorted(dict.fromkeys(formats), key=lambda f: f == "tensorrt"):
        module = exporter_module(name)
        chosen = [p for p in PRECISIONS if p in (precisions or (module.DEFAULT_PRECISION,)) and p in module.PRECISIONS]
        if not chosen:
            raise ConfigError(f"{name} exports {', '.join(module.PRECISIONS)}; --precision asks only for "
                              f"{', '.join(precisions or ())}")
        jobs.extend((name, precision) for precision in chosen)
    return jobs


def run_export(request: ExportRequest, on_step: Callable[[str], None] | None = None) -> ExportReport:
    """Export, check and report; returns the report (also written to OUT/export.json)."""
    step = on_step or (lambda message: None)
    source = resolve_source(request.run, request.arch, request.resolution, request.num_classes)
    jobs = plan_jobs(request.formats, request.precisions)
    exporters = {name: get_exporter(name) for name, _ in jobs}  # refuse before any work
    trt_device = _tensorrt_device(request) if "tensorrt" in exporters else None
    if "coreml" in exporters:
        exporters["coreml"].deployment_target(request.deployment_target)
    if request.measure:
        get_device(request.measure, request.devices_file)  # a misspelt device fails now, not after the export
    model, trained = build_model(source, request.seed)
    folded = fold_batchnorm(model)
    images = ImageSource(request.data or source.data, source.data_options if not request.data else {})
    validation = validation_set(images, source.arch, request.validation_size)
    example = parity_images(validation, source.arch, request.parity_size, request.seed)
    needs_calibration = any(precision == "int8" for _, precision in jobs)
    calibration = calibration_images(images, source.arch, request.calibration_size, request.seed) \
        if needs_calibration else None
    report = ExportReport.open(request.out or _default_out(source), _header(request, source, model, folded,
                                                                                 trained, exporters, images),
                               request.fresh)
    written: dict[tuple[str, str], Path] = {}
    for name, precision in jobs:
        step(f"{name} {precision}")
        entry = report.reusable(name, precision)
        if entry is None:
            options = _options(request, name, precision, written, calibration, trt_device)
            entry = _export_one(exporters[name], name, precision, model, folded, example, report.folder, options,
                                source, validation)
        written[(name, precision)] = report.folder / entry["file"]
        report.add_artifact(entry)
    devices = request.devices or ((source.device,) if source.device else ())
    if request.measure and request.measure not in devices:
        devices = (*devices, request.measure)  # measured is compared with predicted
    predictions = []
    for device in devices:
        step(f"predict {device}")
        lut = source.lut if device == source.device else None  # the table the run searched with
        predictions.append(predict_latency(source.arch, device, request.lut_dir, lut, request.devices_file,
                                           source.space))
    report.set_latency("predicted", predictions)
    if request.measure:
        step(f"measure {request.measure}")
        lut = source.lut if request.measure == source.device else None
        try:
            measured = measure_latency(request.measure, folded, source.arch, written, request.devices_file,
                                       request.lut_dir, lut)
        except HwnasError as error:  # no table to time against, or the device is out of reach: the files stand
            measured = {"device": request.measure, "error": str(error)}
        predicted = next((p for p in report.data["latency"]["predicted"]
                          if p["device"] == request.measure and "predicted_ms" in p), None)
        if predicted and "median_ms" in measured:
            measured["predicted_ms"] = predicted["predicted_ms"]
            measured["error_pct"] = 100 * (predicted["predicted_ms"] - measured["median_ms"]) / measured["median_ms"]
        report.set_latency("measured", measured)
    return report


def _default_out(source: ExportSource) -> Path:
    return source.path / "export" if source.kind == "run" else Path("exports") / source.name


def _tensorrt_device(request: ExportRequest):
    """The first named device that runs TensorRT, else the shipped `gpu`; checked before any work."""
    from hwnas.export.tensorrt import check_device

    named = [get_device(d, request.devices_file) for d in request.devices]
    device = next((d for d in named if d.runtime == "tensorrt"), None) or get_device("gpu", request.devices_file)
    check_device(device)
    return device


def _options(request: ExportRequest, name: str, precision: str, written: dict[tuple[str, str], Path],
             calibration: torch.Tensor | None, trt_device) -> dict[str, Any]:
    if name == "onnx":
        return {"opset": request.opset, "dynamic_batch": request.dynamic_batch, "simplify": request.simplify}
    if name == "tflite":
        return {"calibration": calibration, "float_model": written.get(("tflite", "fp32")),
                "channels_last": request.channels_last}
    if name == "coreml":
        return {"deployment_target_name": request.deployment_target}
    if name == "tensorrt":
        onnx_path = written.get(("onnx", "fp32")) if not request.dynamic_batch else None
        return {"device": trt_device, "onnx_path": onnx_path, "calibration": calibration, "opset": request.opset}
    return {}


def _export_one(exporter: ModuleType, name: str, precision: str, model: nn.Module, folded: nn.Module,
                example: torch.Tensor, folder: Path, options: dict[str, Any], source: ExportSource,
                validation: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, Any]:
    """Write one file from the folded network and check it against the original (unfolded) network."""
    target = folder / f"model.{precision}{exporter.SUFFIX}"
    tick = time.perf_counter()
    try:
        path = exporter.export(folded, example, target, precision=precision, **options)
    except UnsupportedBlock as refusal:
        raise _name_block(refusal, source) from None
    export_s = time.perf_counter() - tick
    entry: dict[str, Any] = {"format": name, "precision": precision, **file_facts(path, folder),
                             "export_s": export_s, "status": "ok",
                             "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()
                                         if k not in ("calibration", "float_model", "onnx_path", "device")}}
    if options.get("device") is not None:
        entry["device"] = options["device"].name
    entry["describe"] = exporter.describe(path)
    if hasattr(exporter, "validate"):
        entry["validation"] = exporter.validate(path, model, example)
    tick = time.perf_counter()
    try:
        twin = exporter.rounded_reference(folded, precision) if hasattr(exporter, "rounded_reference") else None
        rounded = (twin, exporter.check(path, twin, example)) if twin is not None else None
        entry["parity"] = parity(exporter.check(path, model, example), model, example, precision, rounded).to_dict()
        if precision == "int8":
            entry["accuracy"] = int8_accuracy(exporter, path, model, validation)
    except CheckSkipped as skipped:
        entry["parity"] = {"skipped": str(skipped)}
    entry["check_s"] = time.perf_counter() - tick
    return entry


def _name_block(refusal: UnsupportedBlock, source: ExportSource) -> HwnasError:
    """The refusal with the block's key and architecture row, which the exporter does not know."""
    if refusal.index is None:
        return refusal
    specs = source.arch.specs()
    key = specs[refusal.index].key if refusal.index < len(specs) else refusal.block
    return HwnasError(f"{refusal.target} cannot represent block {refusal.index} `{key}` of {source.name}: "
                      f"{refusal.reason}")


def int8_accuracy(exporter: ModuleType, path: Path, model: nn.Module,
                  validation: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, Any]:
    """Top-1 of the int8 file and of PyTorch fp32 on the validation images; the drop in percentage points."""
    if validation is None:
        return {"skipped": "no dataset to validate on (give --data, or export a run whose config names one)"}
    images, labels = validation
    with torch.no_grad():
        reference = float((model.eval()(images).argmax(1) == labels).float().mean())
    quantised = float((np.argmax(exporter.run(path, images), axis=1) == labels.numpy()).mean())
    return {"split": "val", "images": len(labels), "fp32_top1": reference, "int8_top1": quantised,
            "drop_pct_points": 100 * (reference - quantised)}


def _header(request: ExportRequest, source: ExportSource, model: nn.Module, folded: nn.Module, trained: bool,
            exporters: dict[str, ModuleType], images: ImageSource) -> dict[str, Any]:
    arch = source.arch
    weights_sha = source.weights_sha256
    inputs = {"arch": arch.to_string(), "network": state_digest(folded), "seed": request.seed,
              "images": asdict(images), "calibration_size": request.calibration_size,
              "opset": request.opset, "dynamic_batch": request.dynamic_batch, "simplify": request.simplify,
              "channels_last": request.channels_last,
              "deployment_target": request.deployment_target}
    versions = {"hwnas": __version__, "torch": torch.__version__}
    for module in exporters.values():
        versions.update(module.versions())
    warnings = []
    if not trained:
        hint = f"; run `hwnas train {source.path}` first" if source.kind == "run" else ""
        warnings.append(f"{source.name}: no trained weights, exporting the randomly initialised network{hint}")
    init = str(source.weights) if trained else (f"random (seed {request.seed}), BatchNorm statistics settled on "
                                                f"{SETTLE_IMAGES} random images")
    return {"key": inputs_key(inputs), "name": source.name, "kind": source.kind,
            "source": str(source.path) if source.path else None, "arch": arch.to_string(),
            "input_shape": list(arch.input_shape), "num_classes": arch.num_classes, "trained": trained, "init": init,
            "weights": str(source.weights) if source.weights else None, "weights_sha256": weights_sha,
            "batchnorm_folded": True,
            "parameters": {"network": _count(model), "folded": _count(folded)},
            "images": {"parity": "validation images" if images.name else "random normal images",
                       "dataset": images.name},
            "versions": versions, "warnings": warnings}


def state_digest(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer, by name: the network the files are made from."""
    sha = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        sha.update(name.encode())
        sha.update(tensor.detach().contiguous().numpy().tobytes())
    return sha.hexdigest()


def _count(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))
