"""The PyTorch modules of cell operations: DARTS' primitives (Liu et al. 2019, Sec. 3 / their `operations.py`),
NAS-Bench-201's (Dong & Yang 2020) and the five DARTOpti additions (thesis `ddarts-thesis.txt`, Sec. 4.1.4).

DARTS ops are pre-activation (ReLU first) and keep the channel count; a strided op halves the resolution.
"""

from __future__ import annotations

import torch
from torch import nn


class ReLUConvBN(nn.Sequential):
    """ReLU, kxk convolution (same padding, optional dilation), BatchNorm: `simple_conv`, `nor_conv`, preprocess."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, affine: bool = True):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class DilConv(nn.Sequential):
    """DARTS `dil_conv_kxk`: ReLU, dilated kxk depthwise, 1x1 pointwise, BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, dilation: int, affine: bool = True):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, kernel, stride, padding, dilation=dilation, groups=cin, bias=False),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class SepConv(nn.Sequential):
    """DARTS `sep_conv_kxk`: two stacked DilConv(dilation 1), the first carrying the stride."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, affine: bool = True):
        super().__init__(DilConv(cin, cin, kernel, stride, 1, affine), DilConv(cin, cout, kernel, 1, 1, affine))


class FactorizedReduce(nn.Module):
    """DARTS' strided identity: ReLU, two stride-2 1x1 convs on offset pixel grids, concatenated, BatchNorm."""

    def __init__(self, cin: int, cout: int, affine: bool = True):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_a = nn.Conv2d(cin, cout // 2, 1, 2, bias=False)
        self.conv_b = nn.Conv2d(cin, cout - cout // 2, 1, 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if x.shape[-1] % 2 or x.shape[-2] % 2:  # odd sizes: pad so both grids give ceil(h/2) x ceil(w/2)
            x = nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_a(x), self.conv_b(x[:, :, 1:, 1:])], dim=1))


class Pool(nn.Module):
    """3x3 max or average pooling (average excludes the padding, as in DARTS); a 1x1 ReLUConvBN adapts channels."""

    def __init__(self, kind: str, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        padding = (kernel - 1) // 2
        self.pool = (nn.MaxPool2d(kernel, stride, padding) if kind == "max"
                     else nn.AvgPool2d(kernel, stride, padding, count_include_pad=False))
        self.adapt = None if cin == cout else ReLUConvBN(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x if self.adapt is None else self.adapt(x))


class FactorizedConv(nn.Sequential):
    """DARTOpti `conv_kx1_1xk` (thesis Sec. 4.1.4; DARTS' `conv_7x1_1x7`): ReLU, 1xk then kx1 convolution, BN."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, affine: bool = True):
        pad = (kernel - 1) // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(cin, cin, (1, kernel), (1, stride), (0, pad), bias=False),
            nn.Conv2d(cin, cout, (kernel, 1), (stride, 1), (pad, 0), bias=False),
            nn.BatchNorm2d(cout, affine=affine),
        )


class Bottleneck(nn.Sequential):
    """DARTOpti `bottleneck_1x3x1` (thesis Sec. 4.1.4 names it only): ResNet's 1x1 reduce (C/4), 3x3, 1x1 expand,
    each as ReLU-conv-BN; the stride sits on the 3x3."""

    def __init__(self, cin: int, cout: int, stride: int, affine: bool = True):
        mid = max(1, cout // 4)
        super().__init__(ReLUConvBN(cin, mid, 1, affine=affine), ReLUConvBN(mid, mid, 3, stride, affine=affine),
                         ReLUConvBN(mid, cout, 1, affine=affine))


class ResidualReduction(nn.Module):
    """NAS-Bench-201's stage transition (Dong & Yang 2020, Sec. 3): a stride-2 basic residual block whose shortcut
    is 2x2 average pooling and a 1x1 convolution."""

    def __init__(self, cin: int, cout: int, stride: int = 2):
        super().__init__()
        self.conv_a = ReLUConvBN(cin, cout, 3, stride)
        self.conv_b = ReLUConvBN(cout, cout, 3)
        self.shortcut = nn.Sequential(nn.AvgPool2d(2, 2, ceil_mode=True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.shortcut(x)


class BnRelu(nn.Sequential):
    """BatchNorm then ReLU: NAS-Bench-201's `lastact` before the classifier."""

    def __init__(self, channels: int):
        super().__init__(nn.BatchNorm2d(channels), nn.ReLU(inplace=False))
