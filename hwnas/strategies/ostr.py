"""OStr-DARTS (`ostr-darts.txt`): select operations by operation strength instead of architecture-weight magnitude.

With p = softmax(α_e) and the mixed feature x̄_e = Σ_o p_o · o(x_e), selecting o on edge e changes the loss by
ΔL ≈ (∂L/∂x̄_e)ᵀ(o(x_e) − x̄_e) to first order (Sec. III-B, Eqs. 5-6); since
∂L/∂α_{e,o} = p_o · (∂L/∂x̄_e)ᵀ(o(x_e) − x̄_e) (Eq. 9), the operation strength is
S_{e,o} = mean over minibatches m of |∂L^(m)/∂α_{e,o}| (Eqs. 10-11; summed over the cells sharing α, which
autograd does), taken from the task loss only. Each edge keeps argmax_o S_{e,o}. OStr* (Sec. IV-D) drops the p_o
factor: mean of |∂L^(m)/∂α_{e,o}| / p_o. Early stop (Sec. III-D): the selected architecture unchanged for K epochs.
Any cell strategy derives with it under `select=ostr` (`hwnas search --select ostr`); strategy `ostr` is DARTS
with it (`hwnas.strategies.darts.OStrDartsStrategy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch

from hwnas.distributed import averaged_over_ranks

CellSelect = Literal["magnitude", "ostr"]


class OperationStrength:
    """Running mean of |∂L/∂α| (or |∂L/∂α| / p for OStr*) per parameter group over architecture minibatches."""

    def __init__(self, star: bool = False):
        self.star = star
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0

    def add(self, grads: Mapping[str, torch.Tensor], probs: Mapping[str, torch.Tensor] | None = None) -> None:
        """One minibatch's task-loss gradient w.r.t. α (and the weights p it was taken at, for OStr*). In a
        data-parallel run the gradient is first averaged over ranks, so every rank holds the same strength."""
        grads = averaged_over_ranks(grads)
        for group, grad in grads.items():
            value = grad.detach().abs().to(torch.float64)
            if self.star:
                value = value / probs[group].detach().to(torch.float64).clamp_min(1e-12)
            self.sums[group] = self.sums[group] + value if group in self.sums else value.clone()
        self.count += 1

    def strength(self) -> dict[str, torch.Tensor]:
        """S per group ([edges, ops]); empty before the first minibatch."""
        return {group: total / max(self.count, 1) for group, total in self.sums.items()}

    def reset(self) -> None:
        self.sums, self.count = {}, 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": {g: t.clone() for g, t in self.sums.items()}, "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = {g: t.clone() for g, t in state["sums"].items()}
        self.count = int(state["count"])




class SelectionStability:
    """Counts the epochs the selected architecture has stayed the same; `stopped` after `patience` of them."""

    def __init__(self, patience: int = 0):
        self.patience = patience
        self.last: str | None = None
        self.unchanged = 0
        self.epoch = -1

    def update(self, epoch: int, selected: str) -> bool:
        """Record the architecture selected at the end of `epoch` (a repeated call for one epoch counts once)."""
        if epoch != self.epoch:
            self.unchanged = self.unchanged + 1 if selected == self.last else 0
            self.last, self.epoch = selected, epoch
        return self.stopped

    @property
    def stopped(self) -> bool:
        return self.patience > 0 and self.unchanged >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"last": self.last, "unchanged": self.unchanged, "epoch": self.epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last, self.unchanged, self.epoch = state["last"], int(state["unchanged"]), int(state["epoch"])
