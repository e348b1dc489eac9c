"""Core ML: an ML program package (.mlpackage) from the exported network with coremltools, fp16 or fp32 compute,
for a chosen minimum deployment target. The package is validated anywhere (its spec, interface and every
operation and weight of the program read back); the numeric check runs the Core ML runtime, so macOS only.
"""

from __future__ import annotations

import platform
import shutil
from collections import Counter
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import ConfigError, HwnasError
from hwnas.export.common import (
    CheckSkipped,
    check_precision,
    locate_unsupported,
    max_abs_error,
    missing_package,
    output_path,
    quiet,
    reference_output,
    rows,
)

NAME = "coreml"
SUFFIX = ".mlpackage"
PRECISIONS = ("fp32", "fp16")
DEFAULT_PRECISION = "fp16"
EXTRA = "coreml"
DEFAULT_TARGET = "iOS16"
INPUT_NAME, OUTPUT_NAME = "input", "output"
_ML_PROGRAM_MIN_SPEC = 6  # ML programs need iOS15 / macOS12 or later


def unavailable_reason() -> str | None:
    try:
        import coremltools  # noqa: F401
    except ImportError:
        return str(missing_package("Core ML", "coremltools", EXTRA))
    return None


def _ct():
    reason = unavailable_reason()
    if reason:
        raise HwnasError(reason)
    import coremltools

    return coremltools


def versions() -> dict[str, str]:
    try:
        return {"coremltools": version("coremltools")}
    except PackageNotFoundError:
        return {}


def deployment_target(name: str):
    """`ct.target.<name>` (iOS15+, macOS12+, ...), or a one-line error listing the targets an ML program allows."""
    ct = _ct()
    targets = {key: value for key, value in ct.target.__members__.items() if value >= _ML_PROGRAM_MIN_SPEC}
    if name not in targets:
        raise ConfigError(f"Core ML deployment target '{name}' is not one an ML program supports "
                          f"(one of {', '.join(targets)})")
    return targets[name]


def export(model: nn.Module, example: torch.Tensor, path: str | Path, *, precision: str = DEFAULT_PRECISION,
           deployment_target_name: str = DEFAULT_TARGET) -> Path:
    """Write `model` as an ML program package at the example's shape (batch 1); fp32 inputs and outputs."""
    ct = _ct()
    check_precision(NAME, precision, PRECISIONS)
    target = deployment_target(deployment_target_name)
    path = output_path(path, SUFFIX)
    model = model.eval()
    try:
        program = _convert(ct, model, example[:1], precision, target)
    except Exception as error:  # noqa: BLE001 - the converter raises many kinds; each becomes one line
        def convert_one(block: nn.Module, x: torch.Tensor) -> None:
            _convert(ct, block.eval(), x, precision, target, named=False)

        raise locate_unsupported(f"Core ML ({deployment_target_name})", model, example[:1], convert_one,
                                 error) from None
    if path.exists():
        shutil.rmtree(path)
    program.save(str(path))
    return path


def _convert(ct, model: nn.Module, example: torch.Tensor, precision: str, target, named: bool = True):
    """torch.export (ATen graph) then coremltools; TorchScript tracing is avoided because coremltools mis-reads
    traced shape arithmetic (channel shuffle) from recent PyTorch."""
    with torch.no_grad(), quiet():  # export and version-compatibility warnings, once per block
        program = torch.export.export(model, (example,)).run_decompositions({})
        names = {"name": INPUT_NAME} if named else {}
        return ct.convert(
            program, source="pytorch", convert_to="mlprogram", minimum_deployment_target=target,
            inputs=[ct.TensorType(shape=tuple(example.shape), dtype=np.float32, **names)],
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)] if named else None,
            compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)


def validate(path: str | Path, model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """Check the package without the Core ML runtime: spec readable and an ML program, interface equal to
    the network's (names, shapes, fp32), and the program with all its weights read back op by op."""
    ct = _ct()
    from coremltools.converters.mil.frontend.milproto.load import load as load_program

    path = Path(path)
    try:
        spec = ct.utils.load_spec(str(path))
    except Exception as error:  # noqa: BLE001
        raise HwnasError(f"{path}: not a readable Core ML package ({error})") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise HwnasError(f"{path}: holds a {spec.WhichOneof('Type')}, expected an mlProgram")
    expected_out = reference_output(model, example[:1]).shape
    interface = {"input": _feature(spec.description.input, INPUT_NAME, path),
                 "output": _feature(spec.description.output, OUTPUT_NAME, path)}
    for role, shape in (("input", tuple(example[:1].shape)), ("output", tuple(expected_out))):
        if tuple(interface[role]["shape"]) != shape or interface[role]["dtype"] != "FLOAT32":
            raise HwnasError(f"{path}: {role} is {interface[role]}, the network's is {list(shape)} FLOAT32")
    weights = path / "Data" / "com.apple.CoreML" / "weights"
    try:
        with quiet():
            program = load_program(spec, spec.specificationVersion, str(weights))
    except Exception as error:  # noqa: BLE001
        raise HwnasError(f"{path}: the ML program does not read back ({error})") from None
    operations = Counter(op.op_type for op in program.functions["main"].operations)
    return {"specification_version": spec.specificationVersion, "interface": interface,
            "operations": dict(sorted(operations.items())),
            "weights_bytes": sum(f.stat().st_size for f in weights.rglob("*") if f.is_file())}


def _feature(features, name: str, path: Path) -> dict[str, Any]:
    feature = next((f for f in features if f.name == name), None)
    if feature is None:
        raise HwnasError(f"{path}: no feature named '{name}' in the model description")
    array = feature.type.multiArrayType
    return {"name": name, "shape": list(array.shape),
            "dtype": array.ArrayDataType.Name(array.dataType)}


def runtime_reason() -> str | None:
    """None where the Core ML runtime can run a package (macOS), else why not."""
    if platform.system() != "Darwin":
        return f"the Core ML runtime exists only on macOS (this is {platform.system()}); the package was " \
               "validated, not run"
    return unavailable_reason()


def run(path: str | Path, example: torch.Tensor) -> np.ndarray:
    """Outputs of the package on the example batch, row by row, with Core ML on the CPU only (so results do
    not depend on which compute unit Core ML picks); macOS only."""
    reason = runtime_reason()
    if reason:
        raise CheckSkipped(reason)
    ct = _ct()
    program = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    return np.concatenate([program.predict({INPUT_NAME: x.numpy().astype(np.float32)})[OUTPUT_NAME]
                           for x in rows(example)])


def check(path: str | Path, model: nn.Module, example: torch.Tensor) -> float:
    """Max abs error between Core ML and PyTorch on `example` (macOS; elsewhere CheckSkipped says why)."""
    return max_abs_error(run(path, example), reference_output(model, example))


def describe(path: str | Path) -> dict[str, Any]:
    ct = _ct()
    spec = ct.utils.load_spec(str(path))
    return {"specification_version": spec.specificationVersion, "type": spec.WhichOneof("Type")}
