"""The cell supernet: every candidate edge of every cell is a mixed edge, y = Σ_o w_o · o(x) (DARTS, Liu et al.
2019, Eq. 2). The weights w come from the strategy (softmax, sigmoid, sparse softmax, ...) per parameter group;
the supernet holds only the network weights.

As in DARTS' search code, batch norms in the supernet have no affine parameters and pooling is followed by one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hwnas.blocks import BlockSpec
from hwnas.cells import ops
from hwnas.cells.space import CellSlot, CellSpace
from hwnas.kernels import mixed_sum
from hwnas.ops import Zero


def search_op(primitive: str, channels: int, stride: int) -> nn.Module:
    """Candidate `primitive` as the supernet trains it (BatchNorm without affine, pools followed by BN)."""
    c = channels
    if primitive == "none":
        return Zero(c, c, stride)
    if primitive in ("max_pool_3x3", "avg_pool_3x3"):
        return nn.Sequential(ops.Pool(primitive[:3], c, c, 3, stride), nn.BatchNorm2d(c, affine=False))
    if primitive == "skip_connect":
        return nn.Identity() if stride == 1 else ops.FactorizedReduce(c, c, affine=False)
    builders = {
        "sep_conv_3x3": lambda: ops.SepConv(c, c, 3, stride, affine=False),
        "sep_conv_5x5": lambda: ops.SepConv(c, c, 5, stride, affine=False),
        "dil_conv_3x3": lambda: ops.DilConv(c, c, 3, stride, 2, affine=False),
        "dil_conv_5x5": lambda: ops.DilConv(c, c, 5, stride, 2, affine=False),
        "nor_conv_1x1": lambda: ops.ReLUConvBN(c, c, 1, stride, affine=False),
        "nor_conv_3x3": lambda: ops.ReLUConvBN(c, c, 3, stride, affine=False),
        "simple_conv_1x1": lambda: ops.ReLUConvBN(c, c, 1, stride, affine=False),
        "simple_conv_3x3": lambda: ops.ReLUConvBN(c, c, 3, stride, affine=False),
        "conv_3x1_1x3": lambda: ops.FactorizedConv(c, c, 3, stride, affine=False),
        "conv_7x1_1x7": lambda: ops.FactorizedConv(c, c, 7, stride, affine=False),
        "bottleneck_1x3x1": lambda: ops.Bottleneck(c, c, stride, affine=False),
    }
    return builders[primitive]()


def _preprocess(spec: BlockSpec) -> nn.Module:
    if spec.op.kind == "fr":
        return ops.FactorizedReduce(spec.cin, spec.cout, affine=False)
    return ops.ReLUConvBN(spec.cin, spec.cout, spec.op.kernel, spec.stride, affine=False)


class MixedEdge(nn.Module):
    """All candidates of one edge; forward is their weighted sum (`hwnas.kernels.mixed_sum`)."""

    def __init__(self, primitives: Sequence[str], channels: int, stride: int):
        super().__init__()
        self.candidates = nn.ModuleList(search_op(p, channels, stride) for p in primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return mixed_sum([op(x) for op in self.candidates], weights)


class SearchCell(nn.Module):
    """A cell with every candidate edge mixed; node j sums the mixed edges from all earlier states."""

    def __init__(self, space: CellSpace, slot: CellSlot):
        super().__init__()
        self.slot = slot
        self.preprocess = nn.ModuleList(_preprocess(spec) for spec in slot.preprocess)
        self.edges = nn.ModuleList(
            MixedEdge(space.primitives, slot.channels, 2 if slot.reduction and source < space.inputs else 1)
            for _, source in space.edges)
        self.plan = space.edges
        self.inputs, self.nodes, self.concat = space.inputs, space.nodes, space.topology == "darts"

    def forward(self, inputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
        states = [pre(x) for pre, x in zip(self.preprocess, inputs)] if len(self.preprocess) else list(inputs)
        for node in range(self.nodes):
            terms = [self.edges[e](states[source], weights[e]) for e, (n, source) in enumerate(self.plan) if n == node]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[self.inputs:], dim=1) if self.concat else states[-1]


class CellSupernet(nn.Module):
    """The search network of a `CellSpace`. `forward(x, weights)` takes one [edges, ops] tensor per group;
    `active[i] = False` takes cell i out (D-DARTS' ablation, thesis Eq. 4.2): its output is zeros where the next
    cells still see the state before it (DARTS), its input where it is the only path (NAS-Bench-201's chain, which
    zeros would cut: every ablated loss equal, gradients exploding through batch norms of constant inputs)."""

    def __init__(self, space: CellSpace):
        super().__init__()
        self.space = space
        self.stem = space.stem.build()
        self.cells = nn.ModuleList(SearchCell(space, slot) for slot in space.slots)
        self.transitions = nn.ModuleDict({str(i): block.build() for i, block in space.transitions})
        self.tail = nn.Sequential(*(spec.build() for spec in space.tail))

    def forward(self, x: torch.Tensor, weights: Mapping[str, torch.Tensor],
                active: Sequence[bool] | None = None) -> torch.Tensor:
        prev_prev = prev = self.stem(x)
        for index, cell in enumerate(self.cells):
            if str(index) in self.transitions:
                prev = self.transitions[str(index)](prev)
            inputs = (prev_prev, prev) if self.space.inputs == 2 else (prev,)
            if active is not None and not active[index]:
                slot = cell.slot
                out = prev if len(inputs) == 1 else prev.new_zeros(prev.shape[0], slot.out_channels, slot.size,
                                                                    slot.size)
            else:
                out = cell(inputs, weights[cell.slot.group])
            prev_prev, prev = prev, out
        return self.tail(prev)

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())
