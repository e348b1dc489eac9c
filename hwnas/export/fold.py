"""BatchNorm folding: every convolution followed by a BatchNorm becomes one convolution with a bias.

Deployment runtimes fold BN themselves, but folding before export makes every exporter see the same graph
(one Conv per `nn.Conv2d` of `Arch.build()`, nothing else) and keeps conversion fast.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """`bn(conv(x))` in eval mode as one convolution: w' = w * g / s, b' = (b - mean) * g / s + beta."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError("a BatchNorm without running statistics cannot be folded")
    fused = copy.deepcopy(conv)
    scale = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight = nn.Parameter((conv.weight * scale.reshape(-1, 1, 1, 1)).detach())
        fused.bias = nn.Parameter(((bias - bn.running_mean) * scale + shift).detach())
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of `model` in eval mode with each Conv2d -> BatchNorm2d pair of a `nn.Sequential` fused.

    The pair must be adjacent in one Sequential (how `hwnas.ops` builds every conv-BN); the input is not changed.
    """
    folded = copy.deepcopy(model).eval()
    for module in folded.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = module._modules[first], module._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels:
                module._modules[first] = fold_conv_bn(conv, bn)
                module._modules[second] = nn.Identity()
    return folded
