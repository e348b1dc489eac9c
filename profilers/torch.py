"""PyTorch eager on the CPU: a reference for comparisons, not a deployment runtime."""

from __future__ import annotations

import platform
from typing import Any

import torch
from torch import nn

from hwnas.profilers.base import (
    Artifact,
    MeasureSettings,
    Profiler,
    Timing,
    cpu_model,
    measure_calls,
    resolved_threads,
)


class TorchProfiler(Profiler):
    runtime = "torch"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def fingerprint(self) -> dict[str, Any]:
        return {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
                "runtime": self.runtime, "runtime_version": torch.__version__,
                "threads": resolved_threads(self.device.threads), "precision": self.device.precision,
                "batch": self.device.batch}

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        return Artifact(None, "torch", tuple(input_shape), payload=model.eval())

    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        previous = torch.get_num_threads()
        torch.set_num_threads(resolved_threads(self.device.threads))
        x = torch.randn(*artifact.input_shape)
        try:
            with torch.inference_mode():
                return measure_calls(lambda: artifact.payload(x), settings)
        finally:
            torch.set_num_threads(previous)
