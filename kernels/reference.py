"""Plain PyTorch references for the mixed-operation kernels: the ground truth every custom kernel must match."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _per_sample(weights: torch.Tensor, k: int) -> torch.Tensor:
    """(K,) -> broadcastable scalar per k; (N, K) -> (N, 1, 1, 1) column per k."""
    column = weights[..., k]
    return column.view(-1, 1, 1, 1) if column.dim() == 1 else column


def mixed_sum(outputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """y = Σ_k w_k · o_k over K candidate outputs of one shape (N, C, H, W); weights (K,) or per sample (N, K)."""
    total = outputs[0] * _per_sample(weights, 0)
    for k in range(1, len(outputs)):
        total = total + outputs[k] * _per_sample(weights, k)
    return total


def candidate_kernel(weight: torch.Tensor | Sequence[torch.Tensor], k: int,
                     kernel_sizes: Sequence[int]) -> torch.Tensor:
    """Candidate k's depthwise kernel: its own tensor, or the centred k×k crop of a shared superkernel."""
    if not isinstance(weight, torch.Tensor):
        return weight[k]
    size, full = kernel_sizes[k], weight.shape[-1]
    start = (full - size) // 2
    return weight[..., start:start + size, start:start + size]


def mixed_depthwise(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor], arch_weights: torch.Tensor,
                    kernel_sizes: Sequence[int], dilations: Sequence[int] | None = None,
                    stride: int = 1) -> torch.Tensor:
    """Σ_k a_k · depthwise_conv(x, W_k): W_k from a (C, 1, Kmax, Kmax) superkernel or K independent tensors."""
    dilations = dilations or [1] * len(kernel_sizes)
    channels = x.shape[1]
    outputs = [
        F.conv2d(x, candidate_kernel(weight, k, kernel_sizes), stride=stride,
                 padding=(kernel_sizes[k] - 1) // 2 * dilations[k], dilation=dilations[k], groups=channels)
        for k in range(len(kernel_sizes))
    ]
    return mixed_sum(outputs, arch_weights)


def masked_pointwise(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                     bias: torch.Tensor | None = None) -> torch.Tensor:
    """1x1 convolution of x with its input channels scaled by `mask` ((Cin,) or per sample (N, Cin))."""
    scale = mask.view(1, -1, 1, 1) if mask.dim() == 1 else mask[:, :, None, None]
    return F.conv2d(x * scale, weight.view(weight.shape[0], -1, 1, 1), bias)
