"""Exporters, one module per format, in a registry of import paths resolved on use (so `import hwnas` never
imports coremltools, TensorRT or litert). Each module has `export(model, example, path, **options)`,
`check(path, model, example) -> max abs error`, `describe(path)`, `versions()` and `unavailable_reason()`.
Third parties add a format with a `hwnas.exporters` entry point naming their module.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from types import ModuleType

from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.export.common import CheckSkipped, Parity, UnsupportedBlock
from hwnas.export.fold import fold_batchnorm
from hwnas.registry import resolve

EXPORTERS: dict[str, str] = {
    "onnx": "hwnas.export.onnx",
    "tflite": "hwnas.export.tflite",
    "coreml": "hwnas.export.coreml",
    "tensorrt": "hwnas.export.tensorrt",
}


def exporter_module(name: str) -> ModuleType:
    """The exporter module of a format, built in or from a `hwnas.exporters` entry point; not checked."""
    if name in EXPORTERS:
        return resolve(EXPORTERS[name])
    for entry in entry_points(group="hwnas.exporters"):
        if entry.name == name:
            return entry.load()
    raise ConfigError(f"unknown export format '{name}' (known: {', '.join(EXPORTERS)})")


def get_exporter(name: str) -> ModuleType:
    """The exporter of a format, refusing in one line (with the pip extra) when its packages are missing."""
    module = exporter_module(name)
    reason = module.unavailable_reason()
    if reason:
        raise RuntimeUnavailable(reason)
    return module


__all__ = ["EXPORTERS", "CheckSkipped", "Parity", "UnsupportedBlock", "exporter_module", "fold_batchnorm",
           "get_exporter"]
