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
from hwnas.device import Device, get_device
from hwnas.errors import HwnasError

# The exported format and precision each runtime loads, and the profiler's artifact format name for it.
RUNTIME_FORMATS = {"onnxruntime": ("onnx", "onnx"), "tflite": ("tflite", "tflite"),
                   "tensorrt": ("tensorrt", "plan"), "coreml": ("coreml", "mlpackage")}


def predict_latency(arch: Arch, device: str, lut_dir: str | Path = "luts", lut: str | Path | None = None,
                    ) -> dict[str, Any]:
    """Predicted ms per image on `device` from its LUT, or the reason there is none (missing table or rows)."""
    from hwnas.lut import LatencyModel, LatencyTable, default_lut_path

    path = Path(lut) if lut is not None else default_lut_path(device, lut_dir)
    entry: dict[str, Any] = {"device": device, "lut": str(path)}
    try:
        table = LatencyTable.load(path)
        measured_on = table.meta.get("device")
        if measured_on and measured_on != device:
            raise HwnasError(f"{path} was measured on device '{measured_on}', not '{device}'")
        model = LatencyModel(table)
        entry.update(predicted_ms=model.predict(arch), block_sum_ms=model.block_sum(arch),
                     calibrated=bool(table.meta.get("calibration")))
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
                    devices_file: str | Path | None = None, settings=None) -> dict[str, Any]:
    """Measured ms per image on the device; the exported file is timed when the device's runtime loads it."""
    from hwnas.profilers import Artifact, MeasureSettings, get_profiler

    device = get_device(device_name, devices_file)
    settings = settings or MeasureSettings()
    shape = (device.batch, arch.in_channels, arch.resolution, arch.resolution)
    match = matching_artifact(device, artifacts) if device.batch == 1 else None
    with get_profiler(device) as profiler:
        if match is not None:
            artifact_format, path = match
            timing = profiler.time(Artifact(path, artifact_format, shape), settings)
            timed = str(path.name)
        else:
            timing, _ = profiler.measure(folded, shape, settings)
            timed = f"the folded network, compiled by the {device.runtime} profiler"
        fingerprint = profiler.fingerprint()
    per_image = timing.per_image(device.batch)
    return {"device": device_name, "runtime": device.runtime, "precision": device.precision, "batch": device.batch,
            "timed": timed, "median_ms": per_image.median, "p10_ms": per_image.p10, "p90_ms": per_image.p90,
            "n": per_image.n, "fingerprint": fingerprint}
