"""SP-DARTS (`sparse-darts.txt`): DARTS with explicit sparse regularisation. The objective sums the smooth and the
sparse relaxation, L_val(a_sm) + L_val(a_sp) with a = softmax(α / t) (Eqs. 13-14); instead of two passes per
batch, each batch draws φ ~ Bernoulli(p) and trains weights and α with the sparse temperature t_sp when φ = 1,
the smooth t_sm otherwise (Eq. 15, Algorithm 1: the same φ for the batch's weight and architecture steps).
p follows Eq. 20: 0 during the first i_wp epochs, then linear from p_low to p_up at the last epoch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.errors import ConfigError
from hwnas.strategies.base import SearchProblem, StepContext, StepOutput
from hwnas.strategies.darts import CellStrategy, DartsParams


def sparse_probability(p_up: float, p_low: float, last: int, epoch: int, warmup: int) -> float:
    """Eq. 20: P_schedule(p_up, p_low, I, i, i_wp) = 0 for i < i_wp, else p_low + (p_up − p_low)/(I − i_wp)·(i − i_wp),
    with i the epoch index and I the last epoch's index (so p reaches p_up in the last epoch)."""
    if epoch < warmup:
        return 0.0
    if last <= warmup:
        return p_up
    return p_low + (p_up - p_low) / (last - warmup) * (min(epoch, last) - warmup)


@dataclass(frozen=True)
class SparseDartsParams(DartsParams):
    """SP-DARTS' schedule (Table IV, DARTS space on CIFAR-10: p_low 0, p_up 1, t_sp 1e-3, t_sm = 10 t_sp, e_wp 1)."""

    t_sp: float = 1e-3  # sparse softmax temperature
    t_sm_ratio: float = 10.0  # smooth temperature t_sm = t_sm_ratio · t_sp
    p_low: float = 0.0  # sparse-batch probability right after the warm-up
    p_up: float = 1.0  # sparse-batch probability in the last epoch
    sparse_warmup: int = 1  # i_wp: epochs with p = 0 (smooth batches only)


class SparseDartsStrategy(CellStrategy):
    """Batch-mixed sparse training (Algorithm 1); selection ranks the smooth weights softmax(α / t_sm)."""

    name = "sp-darts"
    Params = SparseDartsParams

    @classmethod
    def check_params(cls, p: SparseDartsParams) -> None:
        super().check_params(p)
        if p.t_sp <= 0 or p.t_sm_ratio <= 0 or not 0 <= p.p_low <= 1 or not 0 <= p.p_up <= 1:
            raise ConfigError("strategy 'sp-darts': t_sp and t_sm_ratio must be > 0, p_low and p_up in [0, 1]")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        self.p = 0.0
        self.phis: list[int] = []  # φ of this epoch's batches, drawn as the weight steps reach them
        self.weight_step = 0
        self.arch_phi = 0

    @property
    def t_sm(self) -> float:
        return self.params.t_sm_ratio * self.params.t_sp

    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None:
        super().start_epoch(epoch, epochs, warmup)
        p = self.params
        self.p = sparse_probability(p.p_up, p.p_low, epochs - 1, epoch, p.sparse_warmup)
        self.phis, self.weight_step = [], 0

    def phi(self, step: int) -> int:
        """φ of batch `step` of this epoch (drawn from the strategy's generator, the same on every rank)."""
        while len(self.phis) <= step:
            self.phis.append(int(torch.rand((), generator=self.generator) < self.p))
        return self.phis[step]

    def temperature(self, phase: str) -> float:
        if phase == "weight":
            return self.params.t_sp if self.phi(self.weight_step) else self.t_sm
        if phase == "arch":
            return self.params.t_sp if self.arch_phi else self.t_sm
        return self.t_sm

    def arch_weights_of(self, alpha: torch.Tensor, phase: str) -> torch.Tensor:
        return F.softmax(alpha / self.temperature(phase), dim=-1)

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        out = super().weight_loss(x, y)
        out.metrics["sparse_batch"] = float(self.phi(self.weight_step))
        self.weight_step += 1
        return out

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        self.arch_phi = self.phi(ctx.step)  # Algorithm 1: the weight batch's φ also drives its architecture step
        return super().arch_backward(x, y, ctx)

    def status(self) -> dict[str, float]:
        return {**super().status(), "p_sparse": self.p, "t_sm": self.t_sm, "t_sp": self.params.t_sp}

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "p": self.p}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        self.p = float(state.get("p", self.p))
