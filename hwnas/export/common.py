"""What every exporter shares: refusals that name the block, skipped checks, parity of outputs, file facts."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import HwnasError, RuntimeUnavailable
from hwnas.units import is_decimal

PRECISIONS = ("fp32", "fp16", "int8")


class UnsupportedBlock(HwnasError):
    """A target cannot represent an operation; `index` is the block (child of the exported Sequential)."""

    def __init__(self, target: str, index: int | None, block: str, reason: str):
        self.target, self.index, self.block, self.reason = target, index, block, reason
        where = f"block {index} ({block})" if index is not None else block
        super().__init__(f"{target} cannot represent {where}: {reason}")


class CheckSkipped(Exception):  # noqa: N818 - a state, not a failure
    """The numeric check needs a runtime or hardware that is not here; the message says which and why."""


def missing_package(target: str, package: str, extra: str) -> RuntimeUnavailable:
    """The one-line refusal for an exporter whose package is not installed."""
    return RuntimeUnavailable(f"{target} export needs {package}, which is not installed: "
                              f'pip install "hwnas[{extra}]"')


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (converters print pages)."""
    text = str(error).strip() or type(error).__name__
    return next((line.strip() for line in text.splitlines() if line.strip()), text)[:300]


def block_name(module: nn.Module) -> str:
    return type(module).__name__


def locate_unsupported(target: str, model: nn.Module, example: torch.Tensor,
                       convert_one: Callable[[nn.Module, torch.Tensor], Any], error: BaseException) -> UnsupportedBlock:
    """Convert block after block (each at the input it sees in the network) to find the one the target refuses.

    Called after the whole network failed to convert; when every block converts alone, the refusal names the
    network and carries the original error.
    """
    if isinstance(model, nn.Sequential):
        x = example
        with torch.no_grad():
            for index, block in enumerate(model):
                try:
                    convert_one(block, x)
                except Exception as block_error:  # noqa: BLE001 - any converter failure is the answer sought
                    return UnsupportedBlock(target, index, block_name(block), first_line(block_error))
                x = block(x)
    return UnsupportedBlock(target, None, "the network", first_line(error))


def block_of_node(node_name: str) -> int | None:
    """The block index in an ONNX node name written by the TorchScript exporter (`/3/expand/expand.0/Conv`)."""
    parts = node_name.strip("/").split("/")
    return int(parts[0]) if parts and is_decimal(parts[0]) else None


def rows(example: torch.Tensor) -> Iterator[torch.Tensor]:
    """Batch-1 slices of an example batch, for artifacts with a fixed batch of one."""
    for index in range(example.shape[0]):
        yield example[index: index + 1]


def reference_output(model: nn.Module, example: torch.Tensor) -> np.ndarray:
    """The PyTorch model's output in eval mode: what every artifact must reproduce."""
    with torch.no_grad():
        return model.eval()(example).numpy()


def max_abs_error(outputs: np.ndarray, reference: np.ndarray) -> float:
    if outputs.shape != reference.shape:
        raise HwnasError(f"exported model gives output shape {tuple(outputs.shape)}, PyTorch gives "
                         f"{tuple(reference.shape)}")
    return float(np.max(np.abs(outputs.astype(np.float64) - reference.astype(np.float64))))


# Parity tolerance relative to the output scale (max |reference|), per precision. int8 has none: its
# criterion is the accuracy drop on validation images (see pipeline.int8_accuracy).
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}


@dataclass(frozen=True)
class Parity:
    """How close an artifact's outputs are to PyTorch's on the same inputs.

    For a precision that rounds weights the same way in PyTorch (TFLite fp16), `floor_error` is PyTorch's own
    error with those rounded weights and `conversion_error` the artifact's distance to that rounded model: the
    first says how sensitive the network is to the rounding, the second what the converter added to it.
    """

    max_abs_error: float
    output_scale: float  # max |PyTorch output|
    precision: str
    inputs: int  # images compared
    floor_error: float | None = None  # relative, PyTorch with the artifact's weight rounding vs PyTorch
    conversion_error: float | None = None  # relative, artifact vs PyTorch with the same weight rounding

    @property
    def relative_error(self) -> float:
        return self.max_abs_error / self.output_scale if self.output_scale > 0 else self.max_abs_error

    @property
    def tolerance(self) -> float | None:
        return TOLERANCES.get(self.precision)

    @property
    def passed(self) -> bool | None:
        return None if self.tolerance is None else self.relative_error <= self.tolerance

    @property
    def conversion_passed(self) -> bool | None:
        return None if self.conversion_error is None else self.conversion_error <= TOLERANCES["fp32"]

    def to_dict(self) -> dict[str, Any]:
        data = {"max_abs_error": self.max_abs_error, "output_scale": self.output_scale,
                "relative_error": self.relative_error, "tolerance": self.tolerance, "passed": self.passed,
                "inputs": self.inputs}
        if self.conversion_error is not None:
            data.update(floor_error=self.floor_error, conversion_error=self.conversion_error,
                        conversion_tolerance=TOLERANCES["fp32"], conversion_passed=self.conversion_passed)
        return data


def parity(max_error: float, model: nn.Module, example: torch.Tensor, precision: str,
           rounded: tuple[nn.Module, float] | None = None) -> Parity:
    """`rounded`: PyTorch with the artifact's weight rounding, and the artifact's max abs error against it."""
    reference = reference_output(model, example)
    scale = float(np.max(np.abs(reference)))
    if rounded is None:
        return Parity(max_error, scale, precision, int(example.shape[0]))
    rounded_model, conversion_abs = rounded
    floor_abs = max_abs_error(reference_output(rounded_model, example), reference)
    divisor = scale if scale > 0 else 1.0
    return Parity(max_error, scale, precision, int(example.shape[0]), floor_abs / divisor, conversion_abs / divisor)


def check_precision(target: str, precision: str, supported: tuple[str, ...]) -> None:
    if precision not in supported:
        raise HwnasError(f"{target} exports precision {', '.join(supported)}, not '{precision}'")


def output_path(path: str | Path, suffix: str) -> Path:
    """The path with the format's suffix, its folder created."""
    path = Path(path)
    if path.suffix != suffix:
        path = path.with_name(path.name + suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def quiet(env: dict[str, str] | None = None) -> Iterator[None]:
    """Keep converters' chatter off stdout (so `--json` stays clean): their prints and native writes to fd 1 go
    to stderr, their Python warnings are silenced; `env` variables are set for the duration and restored."""
    saved_env = {key: os.environ.get(key) for key in env or {}}
    os.environ.update(env or {})
    sys.stdout.flush()
    saved_fd = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved_fd, 1)
        os.close(saved_fd)
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
