"""Profilers, one per runtime, in a registry of import paths resolved on use (so `import hwnas` never imports
TensorRT or coremltools). Third parties register with a `hwnas.backends` entry point named after the runtime.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path

from hwnas.device import Device
from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.profilers.base import Artifact, MeasureSettings, Profiler, Timing
from hwnas.registry import resolve

PROFILERS: dict[str, str] = {
    "onnxruntime": "hwnas.profilers.onnxruntime:OnnxRuntimeProfiler",
    "torch": "hwnas.profilers.torch:TorchProfiler",
    "tflite": "hwnas.profilers.tflite:TFLiteProfiler",
    "tensorrt": "hwnas.profilers.tensorrt:TensorRTProfiler",
    "coreml": "hwnas.profilers.coreml:CoreMLProfiler",
}


def _resolve(path: str) -> type[Profiler]:
    return resolve(path)


def profiler_class(runtime: str) -> type[Profiler]:
    """The profiler class for a runtime, from the built-ins or a `hwnas.backends` entry point."""
    if runtime in PROFILERS:
        return _resolve(PROFILERS[runtime])
    for entry in entry_points(group="hwnas.backends"):
        if entry.name == runtime:
            return entry.load()
    raise ConfigError(f"no profiler for runtime '{runtime}' (built in: {', '.join(PROFILERS)})")


def get_profiler(device: Device, workdir: str | Path | None = None) -> Profiler:
    """A profiler that measures on `device`: in this process when local, else through the device agent."""
    if not device.is_local:
        try:
            remote = importlib.import_module("hwnas.profilers.remote")
        except ModuleNotFoundError:
            raise RuntimeUnavailable(
                f"device '{device.name}' is reached over {device.transport}, and this hwnas has no remote "
                "transport; profile on the target itself") from None
        return remote.RemoteProfiler(device, workdir)
    cls = profiler_class(device.runtime)
    reason = cls.unavailable_reason()
    if reason:
        raise RuntimeUnavailable(f"device '{device.name}' ({device.runtime}): {reason}")
    return cls(device, workdir)


__all__ = ["Artifact", "MeasureSettings", "PROFILERS", "Profiler", "Timing", "get_profiler", "profiler_class"]
