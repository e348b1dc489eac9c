"""The supernet of a DenseNAS space: every routing block computed, each fed by the mixed outputs of the
alignment layers on its incoming edges weighted by the routing probabilities p_ij (DenseNAS Sec. 3.2: the input
of block j is Σ_i p_ij · O_ij(x_i), p_i· the softmax over block i's outgoing paths)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwnas import kernels
from hwnas.spaces.dense import DenseChoice, DenseSpace
from hwnas.supernet.chain import Selection
from hwnas.supernet.mixed import mixed_layer


class DenseSupernet(nn.Module):
    """Stem, one mixed alignment layer per edge, mixed basic layers per routing block, classifier; `masked`: the
    candidates of a layer share weights where they allow."""

    def __init__(self, space: DenseSpace, masked: bool = False):
        super().__init__()
        self.space = space
        stem, head = space.fixed_specs()
        self.stem = nn.Sequential(*(spec.build() for spec in stem))
        self.edges = nn.ModuleList(mixed_layer(edge.candidates, masked) for edge in space.edges)
        self.blocks = nn.ModuleList(
            nn.ModuleList(mixed_layer(space.layer_specs[node], masked) for _ in range(block.layers))
            for node, block in enumerate(space.blocks))
        self.classifier = head[0].build()
        self.incoming = [[e.index for e in space.in_edges(node)] for node in range(space.num_nodes)]

    def forward(self, x: torch.Tensor, edge_ops: Sequence[Selection], layer_ops: Sequence[Sequence[Selection]],
                edge_probs: torch.Tensor) -> torch.Tensor:
        """`edge_probs[e]` is the routing probability p_ij of edge e; nodes off every path still compute."""
        outputs = [self.stem(x)]
        for node in range(1, self.space.num_nodes):
            parts, weights = [], []
            for e in self.incoming[node]:
                edge = self.space.edges[e]
                selection = edge_ops[e]
                parts.append(self.edges[e](outputs[edge.src], selection.weights, selection.active))
                weights.append(edge_probs[e])
            h = kernels.mixed_sum(parts, torch.stack(weights))
            if node < self.space.num_nodes - 1:
                for layer, selection in zip(self.blocks[node - 1], layer_ops[node - 1]):
                    h = layer(h, selection.weights, selection.active)
            outputs.append(h)
        return self.classifier(outputs[-1])

    def forward_choice(self, x: torch.Tensor, choice: DenseChoice) -> torch.Tensor:
        """One path of the supernet (shared weights): the network `space.arch(choice)` would build."""
        h = self.stem(x)
        for step, (src, dst) in enumerate(zip(choice.path, choice.path[1:])):
            edge = self.space.edge(src, dst)
            h = self.edges[edge.index](h, _one(choice.edge_ops[step], len(edge.candidates)),
                                       (choice.edge_ops[step],))
            if dst < self.space.num_nodes - 1:
                for layer, op in zip(self.blocks[dst - 1], choice.layer_ops[step]):
                    h = layer(h, _one(op, len(layer)), (op,))
        return self.classifier(h)


def _one(index: int, size: int) -> torch.Tensor:  # moved to the data's device by kernels.mixed_sum
    weights = torch.zeros(size)
    weights[index] = 1.0
    return weights
