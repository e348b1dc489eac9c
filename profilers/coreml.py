"""Core ML: blocks converted with coremltools to .mlpackage (ML program), timed with `MLModel.predict` on macOS.

Conversion runs anywhere coremltools installs (Linux included); predictions only on macOS, so a Mac is usually
profiled through the agent (`transport: ssh://mac`). Precisions: fp32 and fp16 are the ML program's compute
precision; int8 is fp16 compute with 8-bit linearly quantised weights (coremltools' `linear_quantize_weights`,
what the Neural Engine runs as W8A16), not integer activations.
"""

from __future__ import annotations

import platform
import uuid
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.profilers.base import Artifact, RunnerProfiler
from hwnas.profilers.target import runners

INSTALL = 'pip install "hwnas[coreml]"'
INPUT_NAME, OUTPUT_NAME = "input", "output"
DEFAULT_TARGET = "macOS13"


def converter_unavailable_reason() -> str | None:
    try:
        version("coremltools")
    except PackageNotFoundError:
        return f"coremltools is not installed ({INSTALL})"
    return None


def fingerprint(target: dict[str, Any], device: Device) -> dict[str, Any]:
    """What makes Core ML rows comparable: the Mac (and macOS), coremltools, compute units, precision, target."""
    return {**target, "precision": device.precision, "batch": device.batch,
            "converter": f"coremltools {version('coremltools')}",
            "compute_units": device.options.get("compute_units", "ALL"),
            "deployment_target": device.options.get("deployment_target", DEFAULT_TARGET)}


def convert(model: nn.Module, input_shape: tuple[int, ...], precision: str, path: Path,
            deployment_target: str = DEFAULT_TARGET) -> dict[str, Any]:
    """Write `model` as an .mlpackage with one input `input` and one output `output`; returns note facts."""
    import coremltools as ct

    example = torch.randn(*input_shape)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model.eval(), example)
        try:
            compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
            mlmodel = ct.convert(traced, inputs=[ct.TensorType(name=INPUT_NAME, shape=tuple(input_shape))],
                                 outputs=[ct.TensorType(name=OUTPUT_NAME)], convert_to="mlprogram",
                                 compute_precision=compute,
                                 minimum_deployment_target=getattr(ct.target, deployment_target))
            meta: dict[str, Any] = {}
            if precision == "int8":
                from coremltools.optimize.coreml import (
                    OpLinearQuantizerConfig,
                    OptimizationConfig,
                    linear_quantize_weights,
                )

                config = OptimizationConfig(global_config=OpLinearQuantizerConfig(mode="linear_symmetric"))
                mlmodel = linear_quantize_weights(mlmodel, config)
                meta["int8"] = "weights-w8a16"
        except Exception as error:  # coremltools raises many types; each means "this block did not convert"
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            raise HwnasError(f"coremltools could not convert this block to a {precision} ML program "
                             f"({type(error).__name__}: {first})") from error
    mlmodel.save(str(path))
    return meta


def package_signature(path: Path) -> dict[str, Any]:
    """The inputs and outputs (name, shape) and spec version recorded in a saved .mlpackage."""
    import coremltools as ct

    spec = ct.utils.load_spec(str(path))

    def features(items) -> list[tuple[str, list[int]]]:
        return [(item.name, [int(d) for d in item.type.multiArrayType.shape]) for item in items]

    return {"inputs": features(spec.description.input), "outputs": features(spec.description.output),
            "spec_version": int(spec.specificationVersion), "ml_program": spec.WhichOneof("Type") == "mlProgram"}


def host_artifact(model: nn.Module, input_shape: tuple[int, ...], device: Device, workdir: Path) -> Artifact:
    """The .mlpackage for one block or network, converted on this machine."""
    path = workdir / f"{uuid.uuid4().hex}.mlpackage"
    meta = convert(model, tuple(input_shape), device.precision, path,
                   device.options.get("deployment_target", DEFAULT_TARGET))
    return Artifact(path, "mlpackage", tuple(input_shape), meta)


class CoreMLProfiler(RunnerProfiler):
    """Core ML in this process (macOS only) with the device's compute units."""

    runtime = "coreml"
    extra = "coreml"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        missing = converter_unavailable_reason()
        if missing:
            return missing
        if platform.system() != "Darwin":
            return (f"Core ML predictions run only on macOS (this is {platform.system()}); profile a Mac through "
                    "the agent with transport: ssh://HOST")
        return None

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(runners.target_info("coreml", self.device.threads), self.device)

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        return host_artifact(model, input_shape, self.device, self.workdir)

