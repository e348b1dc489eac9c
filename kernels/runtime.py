"""Where the custom kernels can run: Triton importable, interpreter mode, jitting on first use, grid sizing.

Triton fixes compiled vs interpreted mode for its own library (tl.zeros, tl.sum, ...) when it is first imported,
from `TRITON_INTERPRET`; the kernels here are plain functions jitted on first use, and a process whose setting
changed after that import gets a one-line error instead of a failure deep in the interpreter.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable

import torch

from hwnas.errors import RuntimeUnavailable

_TRUE = ("1", "true", "on", "yes")


def triton_installed() -> bool:
    """Whether `import triton` would succeed (checked without importing it)."""
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton kernels run in its CPU interpreter (`TRITON_INTERPRET=1`)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


def mode_mismatch() -> str | None:
    """Why the current TRITON_INTERPRET cannot be honoured: triton was imported under the other setting."""
    if "triton" not in sys.modules:
        return None
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    imported_interpreted = isinstance(tl.zeros, InterpretedFunction)
    if imported_interpreted == interpreting():
        return None
    before, now = ("1", "unset") if imported_interpreted else ("unset", "1")
    return (f"TRITON_INTERPRET was {before} when triton was imported and is {now} now; Triton fixes its mode at "
            "import, so set TRITON_INTERPRET in the environment before the process starts")


def triton_unusable_reason(device: torch.device) -> str | None:
    """Why Triton kernels cannot run on tensors of `device`, or None when they can."""
    if not triton_installed():
        return "triton is not installed (pip install 'hwnas[triton]')"
    if device.type != "cuda" and not interpreting():
        return (f"Triton kernels need CUDA tensors (got {device.type}); set TRITON_INTERPRET=1 to run them on the "
                "CPU in Triton's interpreter")
    return mode_mismatch()


def require_triton(device: torch.device) -> None:
    """Raise one clear line when the Triton kernels cannot run on `device`."""
    reason = triton_unusable_reason(device)
    if reason:
        raise RuntimeUnavailable(reason)


@functools.cache
def _jitted(fn: Callable) -> Callable:
    import triton

    return triton.jit(fn)


def jit(fn: Callable) -> Callable:
    """`triton.jit(fn)`, built once, in the mode triton was imported in (checked against TRITON_INTERPRET)."""
    reason = mode_mismatch()
    if reason:
        raise RuntimeUnavailable(reason)
    return _jitted(fn)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(value: int) -> int:
    return 1 << max(0, int(value) - 1).bit_length()


def target_programs(device: torch.device) -> int:
    """How many programs a split reduction should launch to fill the device (4 per SM on a GPU)."""
    if device.type != "cuda":
        return 1
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def upcast_dot(dtype: torch.dtype) -> bool:
    """Triton's interpreter has no bfloat16 arithmetic (numpy lacks the type), so its dots run in fp32 there."""
    return interpreting() and dtype == torch.bfloat16


def batch_dense(t: torch.Tensor) -> bool:
    """Dense memory with the batch dimension outermost (NCHW- or NHWC-contiguous): sample n is one flat run."""
    if t.is_contiguous():
        return True
    return t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)


def like_layout(t: torch.Tensor, strides: tuple[int, ...]) -> torch.Tensor:
    """`t` with exactly these (dense) strides: itself when it has them, else a copy."""
    if t.stride() == tuple(strides):
        return t
    return torch.empty_strided(t.shape, strides, dtype=t.dtype, device=t.device).copy_(t)
