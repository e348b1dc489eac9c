"""Write a PyTorch module as ONNX: the one path shared by the ONNX Runtime/TensorRT profilers and the exporter."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

DEFAULT_OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = False) -> Path:
    """Export `model` in eval mode at the example's shape with TorchScript tracing (fast, no onnxscript needed)."""
    path = Path(path)
    model = model.eval()
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation on every call
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamic_axes=axes,
                          do_constant_folding=True)
    return path
