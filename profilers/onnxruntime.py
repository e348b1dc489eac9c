"""ONNX Runtime on the CPU: blocks exported to ONNX, run with fixed threads and full graph optimisation."""

from __future__ import annotations

import platform
import uuid
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import ConfigError
from hwnas.onnx_io import INPUT_NAME, export_onnx
from hwnas.profilers.base import (
    Artifact,
    MeasureSettings,
    Profiler,
    Timing,
    cpu_model,
    resolved_threads,
    time_runner,
)
from hwnas.profilers.target.runners import Runner


class OnnxRuntimeProfiler(Profiler):
    runtime = "onnxruntime"

    def __init__(self, device, workdir=None):
        super().__init__(device, workdir)
        if device.precision != "fp32":
            raise ConfigError(f"device '{device.name}': onnxruntime CPU profiling supports precision fp32, "
                              f"not {device.precision} (use tflite or tensorrt for fp16/int8)")
        unknown = sorted(set(device.options) - {"optimization"})
        if unknown:
            raise ConfigError(f"device '{device.name}': unknown onnxruntime option '{unknown[0]}' "
                              "(allowed: optimization)")
        self.threads = resolved_threads(device.threads)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed (pip install onnxruntime)"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import onnxruntime

        return {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
                "runtime": self.runtime, "runtime_version": onnxruntime.__version__, "threads": self.threads,
                "precision": self.device.precision, "batch": self.device.batch}

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        path = self.workdir / f"{uuid.uuid4().hex}.onnx"
        export_onnx(model, torch.randn(*input_shape), path)
        return Artifact(path, "onnx", tuple(input_shape))

    def session(self, artifact: Artifact):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        level = self.device.options.get("optimization", "all")
        options.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        }[level]
        options.log_severity_level = 3
        return ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])

    def open(self, artifact: Artifact) -> Runner:
        session = self.session(artifact)
        feed = {INPUT_NAME: np.random.default_rng(0).standard_normal(artifact.input_shape, dtype=np.float32)}
        return Runner(lambda: session.run(None, feed))

    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        return time_runner(self.open(artifact), settings)
