"""TFLite/LiteRT: blocks converted with litert-torch (NHWC in and out), timed by the LiteRT interpreter with XNNPACK.

Precisions: fp32; fp16 = fp16 weights (litert-torch's fp16 recipe; XNNPACK computes in fp16 where the CPU has fp16
arithmetic, e.g. ARMv8.2+, and in fp32 after dequantising elsewhere); int8 = static post-training quantisation
through PyTorch's PT2E flow (per-channel symmetric weights, activations calibrated on random inputs), fp32 I/O.
Blocks take and return NHWC tensors, so the per-block transposes that an NCHW conversion adds (and a whole network
would not have inside it) stay out of the table. Conversion takes seconds per block and timing milliseconds, so
converted files are cached per machine (artifact_cache; option `conversion_cache`: a folder, or "off").
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import uuid
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.profilers.artifact_cache import ArtifactCache, default_folder, structure_key
from hwnas.profilers.base import Artifact, RunnerProfiler
from hwnas.profilers.target import runners

INSTALL = 'pip install "hwnas[tflite]"'
def converter_unavailable_reason() -> str | None:
    try:
        version("litert-torch")
    except PackageNotFoundError:
        return f"litert-torch (the PyTorch -> TFLite converter) is not installed ({INSTALL})"
    return None


def fingerprint(target: dict[str, Any], device: Device) -> dict[str, Any]:
    """What makes TFLite rows comparable: the target's CPU and LiteRT build, threads, precision, conversion."""
    return {**target, "precision": device.precision, "batch": device.batch,
            "converter": f"litert-torch {version('litert-torch')}", "layout": "nhwc",
            "xnnpack": bool(device.options.get("xnnpack", True))}


@contextlib.contextmanager
def _quiet_conversion() -> Iterator[None]:
    """litert-torch draws progress, and its quantiser prints sizes, on stdout: keep stdout clean for --json.
    Its C++ exporter logs an INFO line per model on stderr unless TF_CPP_MIN_LOG_LEVEL is set when it loads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    previous = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        if previous is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = previous


def convert(model: nn.Module, input_shape: tuple[int, ...], precision: str, path: Path,
            calibration_batches: int = 8) -> dict[str, Any]:
    """Write `model` as a .tflite file at `path` taking NHWC input; returns facts for the LUT note."""
    with _quiet_conversion():
        import litert_torch

    model = model.eval()
    example = torch.randn(*input_shape)
    with torch.no_grad():
        channel_last_output = model(example).dim() >= 3
    wrapped = litert_torch.to_channel_last_io(model, args=[0], outputs=[0] if channel_last_output else []).eval()
    sample = (example.permute(0, 2, 3, 1).contiguous(),)
    meta: dict[str, Any] = {}
    with _quiet_conversion(), torch.no_grad():
        try:
            if precision == "fp32":
                edge = litert_torch.convert(wrapped, sample)
            elif precision == "fp16":
                from litert_torch.generative.quantize import quant_recipes

                edge = litert_torch.convert(wrapped, sample, quant_config=quant_recipes.full_fp16_recipe())
                meta["fp16"] = "weights"
            else:
                edge = litert_torch.convert(_pt2e_int8(wrapped, sample, calibration_batches), sample,
                                            quant_config=_int8_config())
                meta["int8"] = f"pt2e-static-random{calibration_batches}"
        except Exception as error:  # the converter raises many types; each means "this block did not convert"
            first = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
            hint = "; try precision fp32 or fp16" if precision == "int8" else ""
            raise HwnasError(f"litert-torch could not convert this block to {precision} TFLite "
                             f"({type(error).__name__}: {first}){hint}") from error
        edge.export(str(path))
    return meta


def _int8_config():
    from litert_torch.quantize import quant_config

    return quant_config.QuantConfig(pt2e_quantizer=_int8_quantizer())


def _int8_quantizer():
    from litert_torch.quantize import pt2e_quantizer

    return pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))


def _pt2e_int8(model: nn.Module, sample: tuple[torch.Tensor], batches: int) -> nn.Module:
    """PyTorch's PT2E post-training quantisation: observe `batches` random inputs, then fold to int8 q/dq."""
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    prepared = prepare_pt2e(torch.export.export(model, sample).module(), _int8_quantizer())
    generator = torch.Generator().manual_seed(0)
    for _ in range(batches):
        prepared(torch.randn(sample[0].shape, generator=generator))
    quantized = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    quantized.training = False  # eval() is refused on exported modules; the flag only silences a converter warning
    return quantized


def _recipe_id() -> str:
    """Changes whenever this module (the conversion recipe) changes, so edited code never reuses old files."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def host_artifact(model: nn.Module, input_shape: tuple[int, ...], device: Device, workdir: Path) -> Artifact:
    """The .tflite file for timing one block or network: from the conversion cache, else converted here."""
    batches = int(device.options.get("calibration_batches", 8))
    setting = device.options.get("conversion_cache", "")
    cache = None if setting == "off" else ArtifactCache(setting or default_folder("tflite"))
    facts = {"converter": version("litert-torch"), "precision": device.precision, "recipe": _recipe_id(),
             "calibration_batches": batches if device.precision == "int8" else 0}
    key = structure_key(model, tuple(input_shape), facts) if cache else None
    found = cache.get(key, ".tflite") if key else None
    if found:
        return Artifact(found[0], "tflite", tuple(input_shape), found[1])
    path = workdir / f"{uuid.uuid4().hex}.tflite"
    meta = convert(model, tuple(input_shape), device.precision, path, batches)
    if key:
        path = cache.put(key, ".tflite", path, meta)
    return Artifact(path, "tflite", tuple(input_shape), meta)


class TFLiteProfiler(RunnerProfiler):
    """LiteRT's interpreter in this process, threads fixed, XNNPACK on unless `xnnpack: false`."""

    runtime = "tflite"
    extra = "tflite"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if runners.runtime_version("tflite") is None:
            return f"the LiteRT interpreter (ai-edge-litert) is not installed ({INSTALL})"
        return converter_unavailable_reason()

    def fingerprint(self) -> dict[str, Any]:
        return fingerprint(runners.target_info("tflite", self.device.threads), self.device)

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        return host_artifact(model, input_shape, self.device, self.workdir)

