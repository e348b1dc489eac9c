"""TFLite (LiteRT): litert-torch conversion in fp32; fp16 (weights stored as float16) and int8 (static post-training
quantisation of weights and activations from a calibration set) derived from the fp32 flatbuffer with the AI Edge
Quantizer. Checked with the LiteRT interpreter (int8 inputs and outputs are (de)quantised around it).
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.common import (
    check_precision,
    first_line,
    locate_unsupported,
    max_abs_error,
    missing_package,
    output_path,
    quiet,
    reference_output,
    rows,
)

NAME = "tflite"
SUFFIX = ".tflite"
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_PRECISION = "fp32"
EXTRA = "tflite"
_QUIET = {"LITERT_TORCH_SHOW_PROGRESS": "n"}


def unavailable_reason() -> str | None:
    for module, package in (("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert"),
                            ("ai_edge_quantizer", "ai-edge-quantizer")):
        try:
            __import__(module)
        except ImportError:
            return str(missing_package("TFLite", package, EXTRA))
    return None


def _require() -> None:
    reason = unavailable_reason()
    if reason:
        raise HwnasError(reason)


def versions() -> dict[str, str]:
    found = {}
    for package in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


def export(model: nn.Module, example: torch.Tensor, path: str | Path, *, precision: str = "fp32",
           calibration: torch.Tensor | None = None, float_model: str | Path | None = None,
           channels_last: bool = False) -> Path:
    """Write `model` as a .tflite at the example's shape (batch 1), taking NCHW input, or NHWC (TFLite's own
    layout, what camera pipelines hand over) with `channels_last`.

    fp16 and int8 start from an fp32 flatbuffer: `float_model` when one was already written for this model
    (saves the slow conversion; it fixes the layout), else a fresh one. int8 needs `calibration` images (NCHW).
    """
    _require()
    check_precision(NAME, precision, PRECISIONS)
    if precision == "int8" and (calibration is None or len(calibration) == 0):
        raise HwnasError("tflite int8 needs calibration images (post-training quantisation measures activation "
                         "ranges on them)")
    path = output_path(path, SUFFIX)
    if precision == "fp32":
        return _convert(model, example, path, channels_last)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(float_model) if float_model else _convert(model, example, Path(folder) / "fp32.tflite",
                                                                channels_last)
        return _quantize(source, path, precision, calibration)


def _convert(model: nn.Module, example: torch.Tensor, path: Path, channels_last: bool) -> Path:
    import litert_torch

    model = model.eval()
    sample = example[:1]
    try:
        with quiet(_QUIET):
            if channels_last:
                wrapped = litert_torch.to_channel_last_io(model, args=[0]).eval()
                litert_torch.convert(wrapped, (sample.permute(0, 2, 3, 1).contiguous(),)).export(str(path))
            else:
                litert_torch.convert(model, (sample,)).export(str(path))
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds; each becomes one line
        raise locate_unsupported("TFLite (litert-torch)", model, sample, _convert_block, error) from None
    return path


def _convert_block(block: nn.Module, x: torch.Tensor) -> None:
    import litert_torch

    with quiet(_QUIET):
        litert_torch.convert(block.eval(), (x,))


def _quantize(source: Path, path: Path, precision: str, calibration: torch.Tensor | None) -> Path:
    from ai_edge_quantizer import qtyping, quantizer, recipe

    if precision == "fp16":
        quant = quantizer.Quantizer(str(source))
        quant.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                                     num_bits=16, algorithm_key="float_casting")
        calibration_result = None
    else:
        quant = quantizer.Quantizer(str(source), recipe.static_wi8_ai8())
        signature, input_name = _signature(source)
        shape = tuple(interpreter(source).get_input_details()[0]["shape"])
        samples = [{input_name: _layout(x.numpy().astype(np.float32), shape)} for x in rows(calibration)]
        try:
            with quiet():
                calibration_result = quant.calibrate({signature: samples})
        except Exception as error:  # noqa: BLE001
            raise HwnasError(f"tflite int8 calibration failed: {first_line(error)}") from None
    try:
        with quiet():
            result = quant.quantize(calibration_result, enable_progress_report=False)
    except Exception as error:  # noqa: BLE001
        raise HwnasError(f"tflite {precision} quantisation failed: {first_line(error)}") from None
    path.write_bytes(bytes(result.quantized_model))
    return path


def _signature(path: Path) -> tuple[str, str]:
    """The flatbuffer's signature key and its input name (litert-torch: serving_default / args_0)."""
    signatures = interpreter(path).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def interpreter(path: str | Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    model = Interpreter(model_path=str(path), num_threads=threads)
    model.allocate_tensors()
    return model


def run(path: str | Path, example: torch.Tensor, threads: int = 1) -> np.ndarray:
    """Float outputs of the .tflite on an NCHW example batch, row by row; an NHWC file gets its layout and int8
    I/O is (de)quantised here."""
    _require()
    model = interpreter(path, threads)
    source, target = model.get_input_details()[0], model.get_output_details()[0]
    outputs = []
    shape = tuple(source["shape"])
    for x in rows(example):
        model.set_tensor(source["index"], _to_input(_layout(x.numpy(), shape), source))
        model.invoke()
        outputs.append(_from_output(model.get_tensor(target["index"]), target))
    return np.concatenate(outputs)


def _layout(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An NCHW batch in the file's input layout (NHWC when it was exported channels-last)."""
    if x.ndim == 4 and tuple(x.shape) != shape and shape == (x.shape[0], *x.shape[2:], x.shape[1]):
        return np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return x


def _to_input(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _from_output(y: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.astype(np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)


def check(path: str | Path, model: nn.Module, example: torch.Tensor) -> float:
    """Max abs error between the LiteRT interpreter and PyTorch on `example`."""
    return max_abs_error(run(path, example), reference_output(model, example))


def rounded_reference(model: nn.Module, precision: str) -> nn.Module | None:
    """PyTorch with the weight rounding the .tflite carries (fp16: conv and linear weights as float16, biases and
    arithmetic float32, as the quantizer's float casting does), or None where there is no such twin (fp32, int8)."""
    if precision != "fp16":
        return None
    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for module in twin.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.copy_(module.weight.half().float())
    return twin


def describe(path: str | Path) -> dict[str, Any]:
    """Input/output shapes and types, and operator counts, as the interpreter reads them."""
    _require()
    model = interpreter(path)
    source, target = model.get_input_details()[0], model.get_output_details()[0]
    ops = Counter(op["op_name"] for op in model._get_ops_details())  # the interpreter's only op listing
    return {"input_shape": source["shape"].tolist(), "input_dtype": np.dtype(source["dtype"]).name,
            "output_shape": target["shape"].tolist(), "output_dtype": np.dtype(target["dtype"]).name,
            "ops": dict(sorted(ops.items()))}
