"""Exact algebraic rewrites of the references that run on vendor kernels (cuDNN / cuBLAS) with no custom code.

- mixed depthwise: fold Σ_k a_k · W_k into one kernel over the union of taps, then one depthwise `F.conv2d`
  (per-sample weights: the batch folds into the groups, N·C groups of batch 1);
- masked pointwise with a per-channel mask: fold the mask into the weight, W · diag(m), then one 1x1 conv.
They are candidates of the dispatcher next to the Triton kernels: where cuDNN wins, they win.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from hwnas.kernels.contract import masked_pointwise_supported, result_dtype
from hwnas.kernels.depthwise_taps import combined_taps, dense_kernel, tap_set


def mixed_depthwise_folded(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor], arch_weights: torch.Tensor,
                           kernel_sizes: Sequence[int], dilations: Sequence[int] | None = None,
                           stride: int = 1) -> torch.Tensor:
    """`mixed_depthwise` as one depthwise convolution with the candidates' kernels summed into one."""
    taps = tap_set(tuple(kernel_sizes), tuple(dilations or [1] * len(kernel_sizes)))
    kernel = dense_kernel(combined_taps(weight, arch_weights, kernel_sizes, taps), taps).to(x.dtype)
    n, c, h, w = x.shape
    if arch_weights.dim() == 1:
        y = F.conv2d(x, kernel, stride=stride, padding=taps.radius, groups=c)
    else:
        y = F.conv2d(x.reshape(1, n * c, h, w), kernel.reshape(n * c, 1, taps.size, taps.size), stride=stride,
                     padding=taps.radius, groups=n * c)
        y = y.view(n, c, *y.shape[-2:])
    return y.to(result_dtype(x.dtype, arch_weights))


def masked_pointwise_supports(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                              bias: torch.Tensor | None = None) -> bool:
    """Per-channel masks only: a per-sample mask would need a per-sample weight (N x Cout x Cin)."""
    return mask.dim() == 1 and masked_pointwise_supported(x, weight, mask, bias)


def masked_pointwise_folded(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                            bias: torch.Tensor | None = None) -> torch.Tensor:
    """`masked_pointwise` as conv1x1(x, W · diag(m)): the mask costs a (Cout x Cin) multiply, not a pass over x."""
    cout, cin = weight.shape[0], x.shape[1]
    folded = weight.reshape(cout, cin) * mask.to(weight.dtype)[None, :]
    return F.conv2d(x.to(weight.dtype), folded.view(cout, cin, 1, 1), bias)
