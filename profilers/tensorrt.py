"""TensorRT on an NVIDIA GPU: ONNX (hwnas.onnx_io) -> engine with TensorRT's builder -> CUDA-event timing.

In this process the engine's I/O lives in PyTorch CUDA tensors and each call is timed with CUDA events recorded
around `execute_async_v3` on one stream. Engines are cached (trt_engine.EngineCache) by ONNX hash + TensorRT
version + GPU + build settings. The engine's layer count (after TensorRT's fusions) lands in the LUT row's note.
Remote boards (Jetson) get the ONNX file through the agent, which builds and times the engine there.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.onnx_io import export_onnx
from hwnas.profilers.base import Artifact, MeasureSettings, RunnerProfiler, Timing
from hwnas.profilers.target import runners, trt_engine

INSTALL = 'pip install "hwnas[tensorrt]"'


def converter_unavailable_reason() -> str | None:
    return None  # the host only exports ONNX; the engine is built where it runs


def fingerprint(target: dict[str, Any], device: Device) -> dict[str, Any]:
    """What makes TensorRT rows comparable: GPU and compute capability, TensorRT version, precision, workspace."""
    return {**target, "precision": device.precision, "batch": device.batch,
            "workspace_mb": int(device.options.get("workspace_mb", trt_engine.DEFAULT_WORKSPACE_MB))}


def host_artifact(model: nn.Module, input_shape: tuple[int, ...], device: Device, workdir: Path) -> Artifact:
    """The ONNX file a TensorRT engine is built from (static shapes)."""
    path = workdir / f"{uuid.uuid4().hex}.onnx"
    export_onnx(model, torch.randn(*input_shape), path)
    return Artifact(path, "onnx", tuple(input_shape))


def _torch_dtype(trt_dtype) -> torch.dtype:
    import tensorrt as trt

    return {trt.float32: torch.float32, trt.float16: torch.float16, trt.int8: torch.int8, trt.int32: torch.int32,
            trt.bool: torch.bool}[trt_dtype]


class TensorRTProfiler(RunnerProfiler):
    """A local NVIDIA GPU through TensorRT; `options`: workspace_mb, calibration, calibration_batches, engine_cache."""

    runtime = "tensorrt"
    extra = "tensorrt"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if runners.runtime_version("tensorrt") is None:
            return f"TensorRT's Python package is not installed ({INSTALL}; on a Jetson it comes with JetPack)"
        try:
            trt_engine._cudart()
        except ImportError:
            return f"cuda-python is not installed ({INSTALL})"
        if not torch.cuda.is_available():
            return "no CUDA GPU is visible to PyTorch here; profile a GPU machine through the agent (ssh://HOST)"
        return None

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(runners.target_info("tensorrt", self.device.threads), self.device)

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        onnx = host_artifact(model, input_shape, self.device, self.workdir)
        try:
            plan, facts = trt_engine.plan_for(onnx.path, self.device.precision, self.device.options, input_shape)
        except runners.RunnerError as error:
            raise HwnasError(f"device '{self.device.name}': {error}") from None
        meta = {key: facts[key] for key in ("layers", "calibration") if key in facts}
        return Artifact(plan, "plan", tuple(input_shape), meta)

    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.ERROR)
        engine = trt.Runtime(logger).deserialize_cuda_engine(artifact.path.read_bytes())
        if engine is None:
            raise HwnasError(f"{artifact.path}: TensorRT cannot load this engine (built for another GPU/version?)")
        context = engine.create_execution_context()
        tensors = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            shape = tuple(context.get_tensor_shape(name))
            tensor = torch.empty(shape, dtype=_torch_dtype(engine.get_tensor_dtype(name)), device="cuda")
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                tensor.normal_() if tensor.is_floating_point() else tensor.zero_()
            context.set_tensor_address(name, tensor.data_ptr())
            tensors.append(tensor)
        stream = torch.cuda.Stream()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def call_ms() -> float:
            start.record(stream)
            if not context.execute_async_v3(stream.cuda_stream):
                raise HwnasError(f"{artifact.path}: TensorRT execute_async_v3 failed")
            end.record(stream)
            end.synchronize()
            return start.elapsed_time(end)

        torch.cuda.synchronize()
        return Timing.from_samples(runners.measure_samples(call_ms, settings.to_dict()))
