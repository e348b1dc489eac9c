"""Mixed layers: one searchable position holding its candidate blocks.

`MixedLayer` keeps one module per candidate and sums the active paths with `hwnas.kernels.mixed_sum`
(all paths: weighted sum; one path: a sample; two paths: ProxylessNAS binary gates).
`MaskedInvertedResidual` shares one set of weights across inverted-residual candidates that differ in kernel,
expansion and SE (FBNetV2-style channel masks, Eq. 3.37 of the thesis, and a shared superkernel as in
HardCoRe-NAS's one-shot model), through `hwnas.kernels.mixed_depthwise` and `masked_pointwise`. One-path
strategies need the sharing on small budgets: with separate weights a random path per step leaves the supernet at
chance (the candidates of a stage's first layer never agree on what their output channels mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwnas import kernels
from hwnas.blocks import BlockSpec
from hwnas.ops import ACTIVATIONS, SqueezeExcite, make_activation, make_divisible


class MixedLayer(nn.Module):
    """Candidate blocks of one position; `forward(x, weights, active)` computes only the `active` paths."""

    def __init__(self, specs: Sequence[BlockSpec]):
        super().__init__()
        self.specs = tuple(specs)
        self.candidates = nn.ModuleList(spec.build() for spec in specs)

    def __len__(self) -> int:
        return len(self.candidates)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None,
                closed: Sequence[int] = ()) -> torch.Tensor:
        """Σ_{k in active} w_k · o_k(x); weights (K,) or per sample (N, K); active None means every path. Paths in
        `closed` have w_k = 0, so no gradient reaches x or their weights through them: they run without autograd,
        and what they save for backward is their output alone (ProxylessNAS's two-path step keeps one graph)."""
        index = list(range(len(self.candidates))) if active is None else list(active)
        outputs = [self._closed(k, x) if k in closed else self.candidates[k](x) for k in index]
        chosen = weights if active is None else weights[..., index]
        return kernels.mixed_sum(outputs, chosen)

    def _closed(self, k: int, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.candidates[k](x)


def maskable(specs: Sequence[BlockSpec]) -> bool:
    """Whether the candidates can share weights: inverted residuals with one stride, groups 1, one activation and
    no dilation, plus at most one identity skip."""
    blocks = [s for s in specs if s.op.kind != "skip"]
    skips = [s for s in specs if s.op.kind == "skip"]
    if not blocks or len(skips) > 1 or any(s.op.kind != "ir" for s in blocks):
        return False
    if skips and (skips[0].cin != skips[0].cout or skips[0].stride != 1):
        return False
    first = blocks[0]
    return all(s.op.groups == 1 and s.op.dilation == 1 and s.op.act == first.op.act and s.stride == first.stride
               and s.cin == first.cin and s.cout == first.cout for s in blocks)


class MaskedInvertedResidual(nn.Module):
    """Weight-sharing inverted residual over candidates (kernel k, expansion e, SE on/off) and optionally skip.

    Expansion runs at the widest width; the depthwise layer is a centred-crop superkernel mixed over kernel
    sizes; the expansion is chosen by a channel mask m = Σ_e b_e·1_e over the first make_divisible(cin·e) channels
    (FBNetV2, Eq. 3.37), which scales the projection's input channels. With one-hot weights this computes exactly
    the chosen candidate (with shared weights); with soft weights it mixes the marginals of kernel, width and SE.
    """

    def __init__(self, specs: Sequence[BlockSpec]):
        super().__init__()
        if not maskable(specs):
            raise ValueError("candidates cannot share weights: " + ", ".join(s.key for s in specs))
        self.specs = tuple(specs)
        self.skip_index = next((i for i, s in enumerate(specs) if s.op.kind == "skip"), None)
        self.block_index = [i for i, s in enumerate(specs) if s.op.kind != "skip"]
        blocks = [specs[i] for i in self.block_index]
        first = blocks[0]
        self.cin, self.cout, self.stride = first.cin, first.cout, first.stride
        self.kernel_sizes = sorted({s.op.kernel for s in blocks})
        self.widths = sorted({make_divisible(first.cin * s.op.expansion) for s in blocks})
        self.se_ratio = max(s.op.se for s in blocks)
        mid = self.widths[-1]
        act = first.op.act
        self.expand = nn.Sequential(nn.Conv2d(self.cin, mid, 1, bias=False), nn.BatchNorm2d(mid), make_activation(act))
        kmax = self.kernel_sizes[-1]
        self.superkernel = nn.Parameter(torch.empty(mid, 1, kmax, kmax))
        nn.init.kaiming_normal_(self.superkernel, mode="fan_out")
        self.dw_bn = nn.BatchNorm2d(mid)
        self.dw_act = make_activation(act) if act in ACTIVATIONS else nn.Identity()
        self.se = SqueezeExcite(mid, self.se_ratio, "hsigmoid" if act == "hswish" else "sigmoid") \
            if self.se_ratio else None
        self.project = nn.Parameter(torch.empty(self.cout, mid, 1, 1))
        nn.init.kaiming_normal_(self.project, mode="fan_out")
        self.project_bn = nn.BatchNorm2d(self.cout)
        self.residual = self.stride == 1 and self.cin == self.cout
        # per candidate: which kernel, which width, SE or not (as index tensors for the marginal sums)
        self.register_buffer("cand_kernel", torch.tensor([self.kernel_sizes.index(s.op.kernel) for s in blocks]),
                             persistent=False)
        self.register_buffer("cand_width", torch.tensor(
            [self.widths.index(make_divisible(first.cin * s.op.expansion)) for s in blocks]), persistent=False)
        self.register_buffer("cand_se", torch.tensor([1.0 if s.op.se else 0.0 for s in blocks]), persistent=False)
        masks = torch.zeros(len(self.widths), mid)
        for i, width in enumerate(self.widths):
            masks[i, :width] = 1.0
        self.register_buffer("width_masks", masks, persistent=False)

    def __len__(self) -> int:
        return len(self.specs)

    def zero_init_last(self) -> None:
        """Start as the identity where the block is residual: zero the projection's batch-norm scale."""
        if self.residual:
            nn.init.zeros_(self.project_bn.weight)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None,
                closed: Sequence[int] = ()) -> torch.Tensor:
        """All paths (`active` None): the marginal mixture of kernel, width and SE under `weights` (FBNetV2).
        Listed `active` paths: Σ_k w_k · o_k as `MixedLayer` computes it, each o_k the candidate alone on the shared
        weights (one path for HardCoRe-NAS's samples, two for ProxylessNAS's gates and DenseNAS's pairs), the
        `closed` ones without autograd."""
        if weights.dim() != 1:
            raise ValueError("the masked layer mixes one weight vector per batch, not per sample")
        weights = weights.to(x.device)
        if active is None:
            return self._mixture(x, weights)
        outputs = [self._path(x, k, with_grad=k not in closed) for k in active]
        return kernels.mixed_sum(outputs, weights[list(active)])

    def _path(self, x: torch.Tensor, k: int, with_grad: bool) -> torch.Tensor:
        """Candidate k alone; its one-hot weights carry no gradient, so only its own kernel size runs."""
        if k == self.skip_index:
            return x
        one_hot = torch.zeros(len(self), device=x.device)
        one_hot[k] = 1.0
        with torch.set_grad_enabled(with_grad and torch.is_grad_enabled()):
            return self._mixture(x, one_hot)

    def _mixture(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        w = weights[self.block_index]
        total = w.sum()
        share = w / total.clamp_min(1e-12)
        kernel_w = torch.zeros(len(self.kernel_sizes), dtype=w.dtype, device=w.device).index_add(
            0, self.cand_kernel, share)
        width_w = torch.zeros(len(self.widths), dtype=w.dtype, device=w.device).index_add(0, self.cand_width, share)
        mask = width_w @ self.width_masks
        h = self.expand(x)
        sizes = self.kernel_sizes
        if not kernel_w.requires_grad:  # no gradient wanted: kernels without weight need not run
            keep = torch.nonzero(kernel_w).flatten().tolist()
            kernel_w, sizes = kernel_w[keep], [sizes[i] for i in keep]
        h = kernels.mixed_depthwise(h, self.superkernel, kernel_w, sizes, None, self.stride)
        h = self.dw_act(self.dw_bn(h))
        if self.se is not None:
            se_w = (share * self.cand_se).sum()
            h = se_w * self.se(h * mask.view(1, -1, 1, 1)) + (1 - se_w) * h
        y = self.project_bn(kernels.masked_pointwise(h, self.project, mask))
        if self.residual:
            y = x + y
        out = total * y
        if self.skip_index is not None:
            out = out + weights[self.skip_index] * x
        return out


def mixed_layer(specs: Sequence[BlockSpec], masked: bool) -> MixedLayer | MaskedInvertedResidual:
    """One searchable position: weight-sharing masked layer when `masked` and the candidates allow, else separate."""
    return MaskedInvertedResidual(specs) if masked and maskable(specs) else MixedLayer(specs)
