"""TensorRT: a serialized engine (plan) built from the network's ONNX on the GPU of a named device, fp32, fp16
or int8 (entropy calibration on calibration images). A plan only runs on the GPU model and TensorRT version
that built it, so it is built where it will run and checked there with TensorRT against PyTorch on the CPU.
"""

from __future__ import annotations

import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.export import onnx as onnx_exporter
from hwnas.export.common import (
    CheckSkipped,
    UnsupportedBlock,
    block_of_node,
    check_precision,
    max_abs_error,
    missing_package,
    output_path,
    reference_output,
    rows,
)
from hwnas.onnx_io import DEFAULT_OPSET

NAME = "tensorrt"
SUFFIX = ".plan"
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp16"
EXTRA = "tensorrt"


def unavailable_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return str(missing_package("TensorRT", "tensorrt", EXTRA))
    if not torch.cuda.is_available():
        return "TensorRT builds and runs plans on an NVIDIA GPU, and none is visible here (torch.cuda)"
    return None


def _trt():
    reason = unavailable_reason()
    if reason:
        raise HwnasError(reason)
    import tensorrt

    return tensorrt


def versions() -> dict[str, str]:
    try:
        return {"tensorrt": version("tensorrt")}
    except PackageNotFoundError:
        return {}


def check_device(device: Device | None) -> None:
    """A plan is built on the GPU it will run on: a device elsewhere gets the command to run there."""
    if device is None:
        return
    if device.runtime != "tensorrt":
        raise HwnasError(f"device '{device.name}' runs {device.runtime}, not tensorrt; name a TensorRT device")
    if not device.is_local:
        raise HwnasError(
            f"device '{device.name}' is reached over {device.transport}; a TensorRT plan runs only on the GPU "
            f"and TensorRT version that built it, so build it there from the exported ONNX: trtexec "
            f"--onnx=model.fp32.onnx --saveEngine=model.{device.precision}.plan"
            + (f" --{device.precision}" if device.precision != "fp32" else ""))


def export(model: nn.Module, example: torch.Tensor, path: str | Path, *, precision: str = DEFAULT_PRECISION,
           device: Device | None = None, onnx_path: str | Path | None = None,
           calibration: torch.Tensor | None = None, workspace_mb: int = 2048, opset: int = DEFAULT_OPSET) -> Path:
    """Build a plan for this machine's GPU from `onnx_path` (exported here when not given)."""
    check_precision(NAME, precision, PRECISIONS)
    check_device(device)
    trt = _trt()
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise HwnasError("tensorrt int8 needs calibration images (entropy calibration of activation ranges)")
    path = output_path(path, SUFFIX)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(onnx_path) if onnx_path else onnx_exporter.export(model, example, Path(folder) / "m.onnx",
                                                                        opset=opset)
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch: the only mode of TensorRT 10
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(source.read_bytes()):
            raise _parser_refusal(trt, parser)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
        if precision == "fp32":
            config.clear_flag(trt.BuilderFlag.TF32)  # on by default; fp32 parity needs full fp32 matmuls
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
            config.int8_calibrator = _entropy_calibrator(trt, calibration, Path(folder) / "calibration.cache")
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise HwnasError(f"TensorRT could not build a {precision} plan for this network (see its log above)")
    path.write_bytes(bytes(plan))
    return path


def _parser_refusal(trt, parser) -> UnsupportedBlock:
    error = parser.get_error(0)
    node = error.node_name() if hasattr(error, "node_name") else ""
    return UnsupportedBlock(f"TensorRT {trt.__version__}", block_of_node(node) if node else None,
                            node or "the network", error.desc())


def _entropy_calibrator(trt, images: torch.Tensor, cache: Path):
    """TensorRT's entropy calibrator fed one image at a time from GPU memory (implicit quantisation: deprecated
    since TensorRT 10.1, so a TensorRT without it gets a refusal instead of an AttributeError)."""
    if not hasattr(trt, "IInt8EntropyCalibrator2"):
        raise HwnasError(f"TensorRT {trt.__version__} has no calibrator-based int8; export int8 with --to tflite "
                         "or build with TensorRT 10")

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # explicitly, as TensorRT's Python docs ask
            self.images = list(rows(images))
            self.index = 0
            self.current: torch.Tensor | None = None  # kept alive while TensorRT reads it

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.images):
                return None
            self.current = self.images[self.index].float().cuda().contiguous()
            self.index += 1
            return [int(self.current.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.exists() else None

        def write_calibration_cache(self, data) -> None:
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def run(path: str | Path, example: torch.Tensor) -> np.ndarray:
    """Outputs of the plan on the example batch, row by row, on this machine's GPU."""
    reason = unavailable_reason()
    if reason:
        raise CheckSkipped(reason)
    trt = _trt()
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise HwnasError(f"{path}: TensorRT {trt.__version__} cannot load this plan here (built on another GPU "
                         "or TensorRT version?)")
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
    outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
    stream = torch.cuda.Stream()
    results = []
    for x in rows(example):
        source = x.float().cuda().contiguous()
        target = torch.empty(tuple(engine.get_tensor_shape(outputs[0])), dtype=torch.float32, device="cuda")
        context.set_tensor_address(inputs[0], source.data_ptr())
        context.set_tensor_address(outputs[0], target.data_ptr())
        if not context.execute_async_v3(stream.cuda_stream):
            raise HwnasError(f"{path}: TensorRT execution failed")
        stream.synchronize()
        results.append(target.cpu().numpy())
    return np.concatenate(results)


def check(path: str | Path, model: nn.Module, example: torch.Tensor) -> float:
    """Max abs error between the TensorRT plan (GPU) and PyTorch (CPU) on `example`."""
    return max_abs_error(run(path, example), reference_output(model, example))


def describe(path: str | Path) -> dict[str, Any]:
    """The GPU that built the plan and, where TensorRT runs here, the engine's layer count."""
    facts: dict[str, Any] = dict(versions())
    if unavailable_reason() is None:
        trt = _trt()
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(Path(path).read_bytes())
        facts.update(gpu=torch.cuda.get_device_name(), compute_capability=list(torch.cuda.get_device_capability()),
                     layers=engine.num_layers if engine is not None else None)
    return facts
