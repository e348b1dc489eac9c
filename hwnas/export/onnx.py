"""ONNX: TorchScript export at a chosen opset (optionally with a dynamic batch), simplified with onnxslim,
checked with ONNX Runtime on the CPU."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError
from hwnas.export.common import (
    UnsupportedBlock,
    block_of_node,
    check_precision,
    first_line,
    locate_unsupported,
    max_abs_error,
    missing_package,
    output_path,
    reference_output,
    rows,
)
from hwnas.onnx_io import DEFAULT_OPSET, INPUT_NAME, export_onnx

NAME = "onnx"
SUFFIX = ".onnx"
PRECISIONS = ("fp32",)
DEFAULT_PRECISION = "fp32"
EXTRA = "onnx-extra"  # onnxslim; onnx and onnxruntime are core dependencies


def unavailable_reason() -> str | None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as error:
        return f"ONNX export needs {error.name}: pip install onnx onnxruntime"
    return None


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    found = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        import onnxslim

        found["onnxslim"] = onnxslim.__version__
    except ImportError:
        pass
    return found


def export(model: nn.Module, example: torch.Tensor, path: str | Path, *, precision: str = "fp32",
           opset: int = DEFAULT_OPSET, dynamic_batch: bool = False, simplify: bool = True) -> Path:
    """Write `model` as ONNX at the example's shape (batch dynamic when asked), simplified unless told not."""
    import onnx

    check_precision(NAME, precision, PRECISIONS)
    path = output_path(path, SUFFIX)
    model = model.eval()
    try:
        export_onnx(model, example[:1], path, opset=opset, dynamic_batch=dynamic_batch)
    except Exception as error:  # noqa: BLE001 - the exporter raises many kinds; each becomes one line
        raise locate_unsupported(f"ONNX opset {opset}", model, example[:1], _export_block(opset), error) from None
    if simplify:
        graph = _simplify(onnx.load(str(path)))
        onnx.save(graph, str(path))
    onnx.checker.check_model(str(path))
    return path


def _export_block(opset: int):
    def convert_one(block: nn.Module, x: torch.Tensor) -> None:
        with tempfile.TemporaryDirectory() as folder:
            export_onnx(block.eval(), x, Path(folder) / "block.onnx", opset=opset)

    return convert_one


def _simplify(graph: Any) -> Any:
    """Constant folding and dead-node removal with onnxslim (quietly: it prints only when asked)."""
    try:
        import onnxslim
    except ImportError:
        raise missing_package("ONNX simplification", "onnxslim", EXTRA) from None
    return onnxslim.slim(graph)


_NODE_RE = re.compile(r"node with name '([^']+)'|Node \(([^)]+)\)")


def session(path: str | Path, threads: int = 1):
    """An ONNX Runtime CPU session; a node it cannot run is named with the block that holds it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as error:  # noqa: BLE001 - ORT raises its own exception types
        match = _NODE_RE.search(str(error))
        node = next((g for g in match.groups() if g), "") if match else ""
        index = block_of_node(node) if node else None
        raise UnsupportedBlock("ONNX Runtime", index, node or "the network", first_line(error)) from None


def run(path: str | Path, example: torch.Tensor) -> np.ndarray:
    """Outputs of the ONNX file on the example batch (row by row when the file's batch is fixed)."""
    sess = session(path)
    batch_dim = sess.get_inputs()[0].shape[0]
    feeds = [example] if not isinstance(batch_dim, int) or batch_dim == example.shape[0] else rows(example)
    outputs = [sess.run(None, {INPUT_NAME: x.numpy().astype(np.float32)})[0] for x in feeds]
    return np.concatenate(outputs)


def check(path: str | Path, model: nn.Module, example: torch.Tensor) -> float:
    """Max abs error between ONNX Runtime and PyTorch on `example`."""
    return max_abs_error(run(path, example), reference_output(model, example))


def describe(path: str | Path) -> dict[str, Any]:
    """Opset, IR version, input/output shapes and node counts by operator."""
    import onnx

    graph = onnx.load(str(path))
    opsets = {entry.domain or "ai.onnx": entry.version for entry in graph.opset_import}

    def shape(value) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    if not graph.graph.input:
        raise HwnasError(f"{path}: the ONNX graph has no input")
    return {"opset": opsets.get("ai.onnx"), "ir_version": graph.ir_version, "producer": graph.producer_name,
            "input_shape": shape(graph.graph.input[0]), "output_shape": shape(graph.graph.output[0]),
            "nodes": dict(sorted(Counter(node.op_type for node in graph.graph.node).items())),
            "parameters": int(sum(np.prod(t.dims, dtype=np.int64) for t in graph.graph.initializer
                                  if t.data_type in _FLOAT_TYPES and len(t.dims) > 0))}


# TensorProto FLOAT, FLOAT16, DOUBLE with at least one dimension: weights and biases, not shape constants or
# scalar operands (Clip bounds)
_FLOAT_TYPES = (1, 10, 11)
