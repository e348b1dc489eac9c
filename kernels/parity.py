"""Parity of an implementation with the reference: output and input gradients, both against a float64 truth.

An fp16 kernel is judged by the error the fp16 reference itself makes: it passes when its error is at most
twice the reference's, or under a floor relative to the values' scale. Tests assert it; `bench/kernels.py`
prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

# Relative error floors per dtype: what rounding alone can produce on small sums of products.
FLOORS = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


@dataclass(frozen=True)
class Parity:
    """One compared tensor: max |impl - truth|, max |reference - truth| (same dtype as impl), max |truth|."""

    name: str
    error: float
    reference_error: float
    scale: float
    floor: float

    @property
    def ok(self) -> bool:
        return self.error <= max(2 * self.reference_error, self.floor * max(self.scale, 1.0))


def _map(arg: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(arg, torch.Tensor):
        return fn(arg)
    if isinstance(arg, list | tuple):
        return type(arg)(_map(a, fn) for a in arg)
    return arg


def _leaves(arg: Any) -> list[torch.Tensor]:
    if isinstance(arg, torch.Tensor):
        return [arg] if arg.requires_grad else []
    if isinstance(arg, list | tuple):
        return [leaf for a in arg for leaf in _leaves(a)]
    return []


def _run(function: Callable[..., torch.Tensor], args: Sequence[Any], grad_out: torch.Tensor,
         dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """[output, grad of every input that requires grad], inputs cast to `dtype` when given (floating ones only)."""

    def prepare(t: torch.Tensor) -> torch.Tensor:
        copy = t.detach()
        if dtype is not None and copy.is_floating_point():
            copy = copy.to(dtype)
        return copy.requires_grad_(t.requires_grad)

    inputs = _map(args, prepare)
    out = function(*inputs)
    leaves = _leaves(inputs)
    grads = torch.autograd.grad(out, leaves, grad_out.to(out.dtype)) if leaves else ()
    return [out.detach(), *grads]


def parity(function: Callable[..., torch.Tensor], reference: Callable[..., torch.Tensor], args: Sequence[Any],
           seed: int = 0) -> list[Parity]:
    """Compare `function` and `reference` on `args` (forward, and backward for inputs that require grad)."""
    probe = reference(*_map(args, lambda t: t.detach()))
    generator = torch.Generator().manual_seed(seed)
    grad_out = torch.randn(probe.shape, generator=generator, dtype=torch.float64).to(probe.device)
    truth = _run(reference, args, grad_out, torch.float64)
    ours = _run(function, args, grad_out)
    theirs = _run(reference, args, grad_out)
    names = ["output"] + [f"grad[{i}]" for i in range(len(truth) - 1)]
    results = []
    for name, t, a, b in zip(names, truth, ours, theirs):
        if a.shape != t.shape or a.dtype != b.dtype:
            raise AssertionError(f"{name}: got {tuple(a.shape)} {a.dtype}, reference {tuple(b.shape)} {b.dtype}")
        results.append(Parity(name, (a.double() - t).abs().max().item(), (b.double() - t).abs().max().item(),
                              t.abs().max().item(), FLOORS.get(a.dtype, 1e-5)))
    return results
