"""The supernet of a chain space: fixed stem and head, one mixed layer per searchable position.

A forward takes one `Selection` per position (weights and the paths to compute) and, for depth-searched stages,
optional depth weights: the stage output is then Σ_d β_d·x_d over the outputs after each admissible depth d
(HardCoRe-NAS's depth relaxation); its optional positions then compute their blocks, never their skip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hwnas import kernels
from hwnas.spaces.chain import Position, Space
from hwnas.supernet.mixed import mixed_layer


@dataclass(frozen=True)
class Selection:
    """What one mixed layer forwards with: weights over its K candidates, which paths to compute (None: all), and
    which of those have a closed gate (weight exactly 0: no gradient flows through them, so they run without autograd
    and only their output is kept, for the gate's gradient)."""

    weights: torch.Tensor
    active: tuple[int, ...] | None = None
    closed: tuple[int, ...] = ()

    @classmethod
    def one(cls, index: int, size: int, weights: torch.Tensor | None = None) -> Selection:
        """A single path; `weights` (e.g. straight-through) default to an exact one-hot."""
        if weights is None:
            weights = torch.zeros(size)
            weights[index] = 1.0
        return cls(weights, (index,))


class ChainSupernet(nn.Module):
    """Stem, searchable positions (mixed or masked weight-sharing layers), head; built from a `Space`."""

    def __init__(self, space: Space, masked: bool = False):
        super().__init__()
        self.space = space
        stem, head = space.fixed_specs()
        self.stem = nn.Sequential(*(spec.build() for spec in stem))
        self.layers = nn.ModuleList(mixed_layer(p.specs, masked) for p in space.positions)
        self.head = nn.Sequential(*(spec.build() for spec in head))
        self.stage_positions: list[list[Position]] = [list(ps) for ps in space.by_stage()]

    @property
    def positions(self) -> tuple[Position, ...]:
        return self.space.positions

    def min_depth(self, stage: int) -> int | None:
        return self.space.stages[stage].min_layers

    def forward(self, x: torch.Tensor, selections: Sequence[Selection],
                depth: Mapping[int, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.stem(x)
        for stage, positions in enumerate(self.stage_positions):
            beta = depth.get(stage) if depth else None
            outputs = []
            for position in positions:
                selection = selections[position.index]
                x = self.layers[position.index](x, selection.weights, selection.active, selection.closed)
                if beta is not None and position.layer + 1 >= self.min_depth(stage):
                    outputs.append(x)
            if beta is not None:
                x = kernels.mixed_sum(outputs, beta)
        return self.head(x)

    def forward_choices(self, x: torch.Tensor, choices: Sequence[int]) -> torch.Tensor:
        """The discrete network `choices` inside the supernet (shared weights), e.g. for validation accuracy."""
        return self(x, [Selection.one(c, len(layer)) for c, layer in zip(choices, self.layers)])
