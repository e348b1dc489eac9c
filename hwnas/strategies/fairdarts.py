"""FairDARTS (Chu et al., ECCV 2020; thesis Sec. 3.2.1, Eqs. 3.1-3.2; `dnas-survey.txt` Sec. 4.1): each
operation's weight is an independent sigmoid σ(α) instead of a softmax share, so operations do not compete
exclusively, and the zero-one loss pushes every σ(α) towards 0 or 1: L_F = L_val + w_01 · L_01.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from hwnas.cells.losses import zero_one_loss
from hwnas.strategies.darts import CellStrategy, DartsParams


@dataclass(frozen=True)
class FairDartsParams(DartsParams):
    """FairDARTS adds the zero-one loss weight."""

    w01: float = 10.0  # weight of L_01 (FairDARTS: 10; the thesis uses 8 in Sec. 4.2.1 and 7 in Sec. 4.2.2)


class FairDartsStrategy(CellStrategy):
    """Sigmoid edge weights plus the zero-one loss; selection as DARTS (the best operation per edge, the best
    edges per node) on the sigmoid weights."""

    name = "fairdarts"
    Params = FairDartsParams

    def arch_weights_of(self, alpha: torch.Tensor, phase: str) -> torch.Tensor:
        del phase
        return torch.sigmoid(alpha)

    def regularizer(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return super().regularizer(weights) + self.params.w01 * zero_one_loss(self.alphas.values())
