"""Which implementation runs each mixed operation: the reference, an algebraic rewrite, Triton or CUDA C++.

`HWNAS_KERNELS` picks: `auto` (default) uses the reference on the CPU and, on CUDA, the fastest implementation
for the call's shapes (timed once per shape key, forward and backward, then remembered); `reference`, `folded`,
`triton` and `cuda` force one. A forced Triton kernel on CPU tensors runs in Triton's interpreter when
`TRITON_INTERPRET=1`, else it is a one-line error. Calls an implementation does not cover (see `contract`) run
the reference, which defines every function.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.kernels import contract, reference
from hwnas.kernels.runtime import triton_unusable_reason
from hwnas.registry import resolve

MODES = ("auto", "reference", "folded", "triton", "cuda")


@dataclass(frozen=True)
class Implementation:
    """One way to compute an operation: `function` and `supports` as import paths, resolved on use."""

    name: str
    function: str
    supports: Callable[..., bool]

    def resolve(self) -> Callable[..., Any]:
        return resolve(self.function)


IMPLEMENTATIONS: dict[str, tuple[Implementation, ...]] = {
    "mixed_sum": (
        Implementation("triton", "hwnas.kernels.mixed_sum_triton:mixed_sum_triton", contract.mixed_sum_supported),
    ),
    "mixed_depthwise": (
        Implementation("folded", "hwnas.kernels.folded:mixed_depthwise_folded", contract.mixed_depthwise_supported),
        Implementation("triton", "hwnas.kernels.mixed_depthwise_triton:mixed_depthwise_triton",
                       contract.mixed_depthwise_supported),
        Implementation("cuda", "hwnas.kernels.mixed_depthwise_cuda:mixed_depthwise_cuda",
                       contract.mixed_depthwise_supported),
    ),
    "masked_pointwise": (
        Implementation("folded", "hwnas.kernels.folded:masked_pointwise_folded",
                       lambda x, w, m, b=None: m.dim() == 1 and contract.masked_pointwise_supported(x, w, m, b)),
        Implementation("triton", "hwnas.kernels.masked_pointwise_triton:masked_pointwise_triton",
                       contract.masked_pointwise_supported),
    ),
}


def kernel_mode() -> str:
    """The `HWNAS_KERNELS` setting, checked."""
    mode = os.environ.get("HWNAS_KERNELS", "auto").strip().lower() or "auto"
    if mode not in MODES:
        raise ConfigError(f"HWNAS_KERNELS='{mode}': expected one of {', '.join(MODES)}")
    return mode


def _unusable_reason(name: str, device: torch.device) -> str | None:
    if name == "reference" or name == "folded":
        return None
    if name == "cuda":
        from hwnas.kernels.mixed_depthwise_cuda import cuda_unusable_reason

        return cuda_unusable_reason(device)
    return triton_unusable_reason(device)


def _tensors(args: Sequence[Any]) -> list[torch.Tensor]:
    found = []
    for arg in args:
        if isinstance(arg, torch.Tensor):
            found.append(arg)
        elif isinstance(arg, list | tuple):
            found.extend(_tensors(arg))
    return found


def _signature(arg: Any) -> Any:
    """What a timing decision depends on: shapes, dtypes, strides, grad flags, plain option values."""
    if isinstance(arg, torch.Tensor):
        return (tuple(arg.shape), arg.dtype, arg.stride(), arg.device, arg.requires_grad)
    if isinstance(arg, list | tuple):
        return tuple(_signature(a) for a in arg)
    return arg


def _detached(arg: Any) -> Any:
    """Inputs for a timing run: same storage, own autograd leaves, same grad flags (no copy of activations)."""
    if isinstance(arg, torch.Tensor):
        return arg.detach().requires_grad_(arg.requires_grad)
    if isinstance(arg, list | tuple):
        return type(arg)(_detached(a) for a in arg)
    return arg


def cuda_time(run: Callable[[], None], repeats: int = 3) -> float:
    """Best of `repeats` CUDA-event timings of `run` (seconds), after one warm-up run (which also compiles)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return best


def forward_backward(function: Callable[..., torch.Tensor], args: Sequence[Any]) -> Callable[[], None]:
    """A closure running `function` and, when grad is on and inputs need it, its backward."""
    grad_on = torch.is_grad_enabled()

    def run() -> None:
        inputs = _detached(args)
        with torch.set_grad_enabled(grad_on):
            out = function(*inputs)
            leaves = [t for t in _tensors(inputs) if t.requires_grad]
            if grad_on and leaves and out.requires_grad:
                torch.autograd.grad(out, leaves, torch.ones_like(out))

    return run


class ShapeKeyedChooser:
    """Picks the fastest implementation per (operation, call signature): timed once, remembered after."""

    def __init__(self, measure: Callable[[Callable[[], None]], float] = cuda_time):
        self.measure = measure
        self.choices: dict[tuple, str] = {}
        self.timings: dict[tuple, dict[str, float]] = {}

    def choose(self, op: str, candidates: dict[str, Callable[..., torch.Tensor]], args: Sequence[Any]) -> str:
        key = (op, torch.is_grad_enabled(), _signature(args))
        if key not in self.choices:
            times = {}
            for name, function in candidates.items():
                try:
                    times[name] = self.measure(forward_backward(function, args))
                except Exception as error:  # a kernel that fails to build or run here loses, the run goes on
                    warnings.warn(f"hwnas kernels: {op} {name} failed ({error}); not used", stacklevel=3)
                    times[name] = float("inf")
            self.timings[key] = times
            self.choices[key] = min(times, key=times.__getitem__)
        return self.choices[key]


@functools.cache
def default_chooser() -> ShapeKeyedChooser:
    """The process-wide chooser the public functions use (its `timings` say what was measured)."""
    return ShapeKeyedChooser()


def implementations(op: str, args: Sequence[Any], include_cuda: bool = True) -> dict[str, Callable[..., torch.Tensor]]:
    """Every implementation that covers this call and can run on its device, the reference first."""
    device = _tensors(args)[0].device
    found = {"reference": getattr(reference, op)}
    for impl in IMPLEMENTATIONS[op]:
        wanted = include_cuda or impl.name != "cuda"
        if wanted and impl.supports(*args) and _unusable_reason(impl.name, device) is None:
            found[impl.name] = impl.resolve()
    return found


def select(op: str, args: Sequence[Any], mode: str | None = None,
           chooser: ShapeKeyedChooser | None = None) -> tuple[str, Callable[..., torch.Tensor]]:
    """(name, function) that computes `op` on `args` under `mode` (default: `HWNAS_KERNELS`)."""
    mode = mode or kernel_mode()
    reference_fn = getattr(reference, op)
    device = _tensors(args)[0].device
    if mode == "reference" or (mode == "auto" and device.type != "cuda"):
        return "reference", reference_fn
    if mode == "auto":  # CUDA: the CUDA C++ build is opt-in (HWNAS_KERNELS=cuda), it takes a minute
        candidates = implementations(op, args, include_cuda=False)
        if torch.cuda.is_current_stream_capturing():  # no timing inside a CUDA graph: prefer the custom kernel
            name = "triton" if "triton" in candidates else next(reversed(candidates))
            return name, candidates[name]
        name = (chooser or default_chooser()).choose(op, candidates, args)
        return name, candidates[name]
    options = {impl.name: impl for impl in IMPLEMENTATIONS[op]}
    if mode == "cuda" and "cuda" not in options:
        mode = "triton"  # operations without a CUDA C++ version use their Triton kernel
    reason = _unusable_reason(mode, device)
    if reason:
        raise RuntimeUnavailable(f"HWNAS_KERNELS={mode}: {reason}")
    if mode not in options or not options[mode].supports(*args):
        return "reference", reference_fn
    return mode, options[mode].resolve()


def mixed_sum(outputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """y = Σ_k w_k · o_k over K candidate outputs of one shape (N, C, H, W); weights (K,) or per sample (N, K).
    The weights move to the outputs' device: architecture weights live on the CPU with the strategy while the
    supernet may run on a GPU (--torch-device)."""
    weights = weights.to(outputs[0].device)
    return select("mixed_sum", (outputs, weights))[1](outputs, weights)


def mixed_depthwise(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor], arch_weights: torch.Tensor,
                    kernel_sizes: Sequence[int], dilations: Sequence[int] | None = None,
                    stride: int = 1) -> torch.Tensor:
    """Σ_k a_k · depthwise_conv(x, W_k): W_k from a (C, 1, Kmax, Kmax) superkernel or K independent tensors."""
    args = (x, weight, arch_weights, tuple(kernel_sizes), tuple(dilations) if dilations else None, stride)
    return select("mixed_depthwise", args)[1](*args)


def masked_pointwise(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """1x1 convolution of x with its input channels scaled by `mask` ((Cin,) or per sample (N, Cin))."""
    return select("masked_pointwise", (x, weight, mask, bias))[1](x, weight, mask, bias)
