"""The runtime-specific `options:` of a device in devices.yaml, checked per runtime with one-line errors."""

from __future__ import annotations

import re
from typing import Any

from hwnas.device import Device
from hwnas.errors import ConfigError
from hwnas.units import shown

COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")

# runtime -> option -> (type, what a valid value is, check)
OPTIONS: dict[str, dict[str, tuple[type, str, Any]]] = {
    "onnxruntime": {
        "optimization": (str, "all, extended or basic", lambda v: v in ("all", "extended", "basic")),
    },
    "tflite": {
        "xnnpack": (bool, "true or false (XNNPACK delegate, default true)", None),
        "calibration_batches": (int, "an integer >= 1 (int8 calibration batches)", lambda v: v >= 1),
        "benchmark_model": (str, "the path of TFLite's benchmark_model binary on the phone (adb)", None),
        "conversion_cache": (str, "a folder for converted blocks, or 'off' (default ~/.cache/hwnas/tflite)", None),
    },
    "coreml": {
        "compute_units": (str, f"one of {', '.join(COMPUTE_UNITS)}", lambda v: v in COMPUTE_UNITS),
        "deployment_target": (str, "iOS15..iOS18 or macOS12..macOS15",
                              lambda v: re.fullmatch(r"(iOS1[5-8]|macOS1[2-5])", v) is not None),
    },
    "tensorrt": {
        "workspace_mb": (int, "an integer >= 1 (builder workspace, MiB)", lambda v: v >= 1),
        "calibration": (str, "'random' or the path of a .npy (N, C, H, W) on the machine that builds engines",
                        lambda v: v == "random" or v.endswith(".npy")),
        "calibration_batches": (int, "an integer >= 1 (int8 calibration batches)", lambda v: v >= 1),
        "engine_cache": (str, "a folder for built engines (default ~/.cache/hwnas/tensorrt)", None),
    },
}


def check_options(device: Device) -> None:
    """Every key of `device.options` must be known for its runtime, with a value of the right kind."""
    allowed = OPTIONS.get(device.runtime, {})
    where = f"device '{device.name}'"
    for key, value in device.options.items():
        if key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ConfigError(f"{where}: unknown {device.runtime} option '{key}' (allowed: {known})")
        kind, expected, check = allowed[key]
        wrong_type = not isinstance(value, kind) or (kind is int and isinstance(value, bool))
        if wrong_type or (check is not None and not check(value)):
            raise ConfigError(f"{where}: {device.runtime} option '{key}' is {shown(value)}, expected {expected}")
