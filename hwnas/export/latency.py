"""Latency of the exported network: predicted on each named device from its LUT, and measured on one device
through its profiler (the exported file itself where the device runs that format, else the profiler's own
compilation of the same folded network).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.arch import Arch
from hwnas.config import DEFAULT_LUT_DIR
from hwnas.device import Device, get_device
from hwnas.errors import HwnasError

# The exported format and precision each runtime loads, and the profiler's artifact format name for it.
RUNTIME_FORMATS = {"onnxruntime": ("onnx", "onnx"), "tflite": ("tflite", "tflite"),
                   "tensorrt": ("tensorrt", "plan"), "coreml": ("coreml", "mlpackage")}


def predict_latency(arch: Arch, device: str, lut_dir: str | Path = DEFAULT_LUT_DIR, lut: str | Path | None = None,
                    devices_file: str | Path | None = None, space: str | None = None) -> dict[str, Any]:
    """Predicted ms per image on `device` from the table that serves it (calibrated with `space`'s fit), or the
    reason there is none (missing table or rows, a table of another device)."""
    from hwnas.lut.device_table import device_lut_path, open_device_model

    entry: dict[str, Any] = {"device": device}
    try:
        target = get_device(device, devices_file)
        entry["lut"] = str(device_lut_path(target, lut, lut_dir))
        model = open_device_model(target, lut, lut_dir, space=space)
        entry.update(predicted_ms=model.predict(arch), block_sum_ms=model.block_sum(arch),
                     calibrated=arch.resolution in model.calibrations)
    except HwnasError as error:
        entry["error"] = str(error)
    return entry


def matching_artifact(device: Device, artifacts: Mapping[tuple[str, str], Path]) -> tuple[str, Path] | None:
    """The exported file this device's runtime loads at its precision, with the profiler's format name."""
    if device.runtime not in RUNTIME_FORMATS:
        return None
    export_format, artifact_format = RUNTIME_FORMATS[device.runtime]
    path = artifacts.get((export_format, device.precision))
    return (artifact_format, path) if path is not None else None


def measure_latency(device_name: str, folded: nn.Module, arch: Arch, artifacts: Mapping[tuple[str, str], Path],
                    devices_file: str | Path | None = None, lut_dir: str | Path = DEFAULT_LUT_DIR,
                    lut: str | Path | None = None) -> dict[str, Any]:
    """Measured ms per image on the device with its LUT's steady method (lut/network_timing.py); the exported file
    is timed when the device's runtime loads it, else the profiler's compilation of the folded network."""
    from hwnas.lut.device_table import device_lut_path
    from hwnas.lut.network_timing import measure_on_device
    from hwnas.profilers import Artifact

    device = get_device(device_name, devices_file)
    shape = (device.batch, arch.in_channels, arch.resolution, arch.resolution)
    match = matching_artifact(device, artifacts) if device.batch == 1 else None
    if match is not None:
        artifact_format, path = match
        timed = str(path.name)

        def compiled(profiler):
            return Artifact(path, artifact_format, shape)
    else:
        timed = f"the folded network, compiled by the {device.runtime} profiler"

        def compiled(profiler):
            return profiler.compile(folded, shape)

    timing = measure_on_device(device, device_lut_path(device, lut, lut_dir), [("exported", arch)],
                               compiled={"exported": compiled})[0]
    return {"device": device_name, "runtime": device.runtime, "precision": device.precision, "batch": device.batch,
            "timed": timed, "method": "steady (paired with the LUT's reference block)", **timing.to_dict()}
