"""The PyTorch modules that block specs build: conv-BN-activation, inverted residuals, SE, skip, classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "swish": nn.SiLU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name; '' means none (identity)."""
    if not name:
        return nn.Identity()
    return ACTIVATIONS[name](inplace=True) if name != "hswish" else nn.Hardswish()


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of `divisor`, never dropping more than 10% (MobileNet convention)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ConvBnAct(nn.Sequential):
    """Convolution (same padding), BatchNorm, activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: str = "relu"):
        padding = (kernel - 1) // 2 * dilation
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            make_activation(act),
        )


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation on `channels`, reduced by `ratio`; hard-sigmoid gate for hswish networks."""

    def __init__(self, channels: int, ratio: float, gate: str = "sigmoid"):
        super().__init__()
        reduced = make_divisible(channels * ratio)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(scale))))


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle, used after grouped pointwise convolutions (FBNet g2 blocks)."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, kxk depthwise, optional SE, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: float, groups: int = 1,
                 se: float = 0.0, act: str = "relu", dilation: int = 1):
        super().__init__()
        mid = make_divisible(cin * expansion, divisor=math.lcm(8, groups))  # grouped convs need groups | mid
        self.expand = ConvBnAct(cin, mid, 1, groups=groups, act=act)
        self.shuffle = ChannelShuffle(groups) if groups > 1 else nn.Identity()
        self.depthwise = ConvBnAct(mid, mid, kernel, stride, groups=mid, dilation=dilation, act=act)
        self.se = SqueezeExcite(mid, se, "hsigmoid" if act == "hswish" else "sigmoid") if se else nn.Identity()
        self.project = ConvBnAct(mid, cout, 1, groups=groups, act="")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(self.shuffle(self.expand(x)))))
        return x + y if self.residual else y

    def zero_init_last(self) -> None:
        """Start a residual block as the identity: zero its projection's batch-norm scale."""
        if self.residual:
            nn.init.zeros_(self.project[1].weight)


class DepthwiseSeparable(nn.Module):
    """MobileNetV1/V2-first block: kxk depthwise, optional SE, 1x1 project; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, se: float = 0.0, act: str = "relu"):
        super().__init__()
        self.depthwise = ConvBnAct(cin, cin, kernel, stride, groups=cin, act=act)
        self.se = SqueezeExcite(cin, se, "hsigmoid" if act == "hswish" else "sigmoid") if se else nn.Identity()
        self.project = ConvBnAct(cin, cout, 1, act="")
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.depthwise(x)))
        return x + y if self.residual else y

    def zero_init_last(self) -> None:
        """Start a residual block as the identity: zero its projection's batch-norm scale."""
        if self.residual:
            nn.init.zeros_(self.project[1].weight)


def zero_init_residual_branches(model: nn.Module) -> nn.Module:
    """Zero the last batch-norm scale of every residual branch in `model`, so each residual block starts as the
    identity (Goyal et al. 2017). A supernet that samples paths needs it: with unit scales, a layer whose sampled
    candidate changes each step adds a different random branch as large as its input, and training stalls."""
    for module in model.modules():
        if hasattr(module, "zero_init_last"):
            module.zero_init_last()
    return model


class Skip(nn.Module):
    """Identity when shapes match, else a strided 1x1 conv-BN projection (FBNet's skip on a stage's first layer)."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.project = None if (cin == cout and stride == 1) else ConvBnAct(cin, cout, 1, stride, act="")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.project is None else self.project(x)


class Zero(nn.Module):
    """The DARTS 'none' operation: zeros of the output shape, kept connected to the input for export."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.cout, self.stride = cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x[:, :, :: self.stride, :: self.stride] * 0.0
        if y.shape[1] != self.cout:
            y = y[:, :1].expand(-1, self.cout, -1, -1)
        return y


class Classifier(nn.Module):
    """Global average pool, optional hidden linear layer with activation (MobileNetV3), final linear layer."""

    def __init__(self, cin: int, num_classes: int, hidden: int = 0, act: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(cin, hidden), make_activation(act)) if hidden else nn.Identity()
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.fc = nn.Linear(hidden or cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.hidden(x.mean((2, 3)))))
