"""What the custom implementations accept and return, shared by all of them (no Triton import here).

Calls outside these checks (mixed dtypes, even kernel sizes, odd ranks) go to the reference, which stays the
definition of every function.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def result_dtype(out_dtype: torch.dtype, weights: torch.Tensor) -> torch.dtype:
    """The dtype the reference mixture produces: (K,) weights act as 0-dim scalars, (N, K) columns promote."""
    return out_dtype if weights.dim() == 1 else torch.promote_types(out_dtype, weights.dtype)


def mixed_sum_supported(outputs: Sequence[torch.Tensor], weights: torch.Tensor) -> bool:
    """Same shape, dtype and device for every candidate; weights (K,), or (N, K) with 4-D candidates."""
    first = outputs[0]
    if any(o.shape != first.shape or o.dtype != first.dtype or o.device != first.device for o in outputs):
        return False
    if not first.is_floating_point() or first.dim() == 0 or first.numel() == 0:
        return False
    k = len(outputs)
    per_sample = first.dim() == 4 and weights.shape == (first.shape[0], k)  # the reference views (N, 1, 1, 1)
    shape_ok = weights.shape == (k,) or per_sample
    return shape_ok and weights.is_floating_point() and weights.device == first.device


def mixed_depthwise_supported(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor],
                              arch_weights: torch.Tensor, kernel_sizes: Sequence[int],
                              dilations: Sequence[int] | None = None, stride: int = 1) -> bool:
    """4-D floating input, odd kernel sizes (even ones shift the output grid), positive stride and dilations."""
    dilations = dilations or [1] * len(kernel_sizes)
    if x.dim() != 4 or not x.is_floating_point() or x.numel() == 0 or stride < 1:
        return False
    if len(dilations) != len(kernel_sizes):
        return False
    if not all(k % 2 == 1 for k in kernel_sizes) or not all(d >= 1 for d in dilations):
        return False
    k = len(kernel_sizes)
    return arch_weights.shape == (k,) or arch_weights.shape == (x.shape[0], k)


def masked_pointwise_supported(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                               bias: torch.Tensor | None = None) -> bool:
    """4-D floating input; weight (Cout, Cin[, 1, 1]) of the dtype x·mask has; mask (Cin,) or (N, Cin)."""
    if x.dim() != 4 or not x.is_floating_point() or x.numel() == 0:
        return False
    n, cin = x.shape[:2]
    if weight.numel() != weight.shape[0] * cin or weight.dtype != torch.promote_types(x.dtype, mask.dtype):
        return False
    if weight.dim() == 4 and weight.shape[2:] != (1, 1):
        return False
    return mask.shape == (cin,) or mask.shape == (n, cin)
