"""FBNet (Wu et al., CVPR 2019): a stochastic supernet whose layer choices are Gumbel-softmax samples of θ,
loss CE · α · log(LAT)^β with LAT(a) = Σ_l Σ_i m_{l,i} · LAT(b_{l,i}) from the LUT (thesis Eqs. 3.34-3.36),
temperature annealed every epoch, weights and θ trained on disjoint splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.budget.costs import fbnet_latency, fbnet_loss
from hwnas.budget.projection import ProjectionMethod
from hwnas.errors import ConfigError
from hwnas.strategies._chain import BudgetControl, ChainLogitsStrategy
from hwnas.strategies.base import SearchProblem, StepContext, StepOutput, set_arch_grads
from hwnas.supernet import Selection
from hwnas.supernet.sampling import gumbel_softmax

DerivationScores = Literal["weights", "loss"]


@dataclass(frozen=True)
class FBNetParams:
    """FBNet's hyperparameters (paper values unless said otherwise)."""

    alpha: float = 0.2  # α in CE · α · log(LAT)^β (paper: 0.2)
    beta: float = 0.6  # β, the accuracy/latency trade-off (paper: 0.6); the starting value where β follows the budget
    tau0: float = 5.0  # initial Gumbel-softmax temperature (paper: 5.0)
    tau_decay: float = 0.956  # temperature factor per epoch (paper: exp(-0.045))
    tau_end: float = 0.1  # > 0: the factor per epoch that reaches this temperature at the last epoch instead
    # (paper: 0, the fixed factor; it ends near 0.09 after the paper's 90 epochs, but a 4-epoch search under it ends
    # at 4.4, never leaves the soft mixture, and derives from near-uniform θ)
    arch_lr: float = 0.2  # Adam learning rate of θ (paper: 0.01, under which θ of a 4-epoch CIFAR-10 search stayed
    # uniform: arch_confidence 0.006)
    arch_weight_decay: float = 5e-4  # L2 on θ (paper: 5e-4)
    hard: bool = False  # one-hot straight-through samples (one path per step) instead of soft masks (all paths)
    budget_control: BudgetControl = "argmax"  # 'argmax': adapt β so the larger of E[LAT] and the argmax network's
    # latency tracks the budget (so derive() need not repair it); 'dual': so E[LAT] does; 'fixed': the paper's β
    control_rate: float = 1.0  # dual step: log β += rate · (E[LAT]/budget − 1) per architecture step
    projection: ProjectionMethod = "lp"  # budget repair when the argmax exceeds the budget: 'lp' or 'greedy'
    scores: DerivationScores = "weights"  # what derivation ranks candidates by: 'weights' (log-probabilities of θ)
    # or 'loss' (first-order change of the task loss when a layer keeps one candidate, measured on the architecture
    # batches; see LossChange)
    masked: bool = False  # share weights where the candidates allow (FBNetV2's masks: soft masks then mix kernel
    # and width marginals); needed for `hard` on other spaces, impossible on FBNet's (grouped ops, projecting skip)


class FBNetStrategy(ChainLogitsStrategy):
    """FBNet's DNAS on a chain space. LAT enters the loss in microseconds so log(LAT) > 0 even for sub-millisecond
    networks (the paper's phone latencies were tens of milliseconds)."""

    name = "fbnet"
    Params = FBNetParams

    @classmethod
    def check_params(cls, p: FBNetParams) -> None:
        if p.tau0 <= 0 or p.tau_end < 0:
            raise ConfigError("strategy 'fbnet': tau0 must be > 0 and tau_end >= 0")
        if p.scores == "loss" and p.hard:
            raise ConfigError("strategy 'fbnet': scores=loss measures the soft mixture; it needs hard=false")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        self.arch_optimizer = torch.optim.Adam(self.logits, lr=p.arch_lr, weight_decay=p.arch_weight_decay)
        self.control = self.make_control(p.beta, 0.05, 20.0)
        self.tau = p.tau0
        self.loss_change = LossChange(len(self.logits))

    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None:
        super().start_epoch(epoch, epochs, warmup)
        p = self.params
        decay = (p.tau_end / p.tau0) ** (1 / max(epochs - 1, 1)) if p.tau_end > 0 else p.tau_decay
        self.tau = p.tau0 * decay ** epoch

    def status(self) -> dict[str, float]:
        return {"temperature": self.tau, "beta": self.control.value}

    def _sample(self) -> tuple[list[Selection], list[torch.Tensor]]:
        selections, masks = [], []
        for theta in self.logits:
            mask, index = gumbel_softmax(theta, self.tau, self.generator, hard=self.params.hard)
            masks.append(mask)
            selections.append(Selection(mask, (int(index),) if self.params.hard else None))
        return selections, masks

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            selections, _ = self._sample()
        logits = self.supernet(x, selections)
        return StepOutput(F.cross_entropy(logits, y), logits)

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        selections, masks = self._sample()
        ce = F.cross_entropy(self.supernet(x, selections), y)
        if self.params.scores == "loss":
            self.loss_change.add(masks, torch.autograd.grad(ce, masks, retain_graph=True))
        lat_us = fbnet_latency(masks, self.cost) * 1000.0
        loss = fbnet_loss(ce, lat_us.float(), alpha=self.params.alpha, beta=self.control.value)
        set_arch_grads(self.logits, loss)
        return {"arch_loss": float(loss.detach()), "arch_ce": float(ce.detach()),
                "sampled_ms": float(lat_us.detach()) / 1000.0}

    def arch_update(self) -> None:
        super().arch_update()
        self.update_control()

    def derivation_scores(self) -> list[np.ndarray]:
        if self.params.scores == "loss" and self.loss_change.count:
            return [-delta for delta in self.loss_change.mean()]
        return super().derivation_scores()

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "tau": self.tau, "loss_change": self.loss_change.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        self.tau = float(state.get("tau", self.tau))
        if "loss_change" in state:
            self.loss_change.load_state_dict(state["loss_change"])


class LossChange:
    """First-order change of the task loss when position l keeps only candidate c, from the soft mixture
    x̄_l = Σ_j m_j · o_j(x_l): ΔL_{l,c} ≈ (∂L/∂x̄_l)ᵀ(o_c(x_l) − x̄_l) = ∂L/∂m_c − Σ_j m_j · ∂L/∂m_j (OStr-DARTS'
    Eqs. 5-6, kept signed), averaged over the architecture batches of the search. A soft supernet's single paths
    score near chance (its blocks only ever ran inside the mixture), so it is judged where it was trained."""

    def __init__(self, positions: int):
        self.sums = [None] * positions
        self.count = 0

    def add(self, masks: list[torch.Tensor], mask_grads: tuple[torch.Tensor, ...]) -> None:
        from hwnas.distributed import averaged_over_ranks

        deltas = {str(i): g - (m * g).sum() for i, (m, g) in enumerate(zip(masks, mask_grads))}
        for i, delta in averaged_over_ranks(deltas).items():
            value = delta.detach().to(torch.float64)
            total = self.sums[int(i)]
            self.sums[int(i)] = value if total is None else total + value
        self.count += 1

    def mean(self) -> list[np.ndarray]:
        return [(total / self.count).numpy() for total in self.sums]

    def state_dict(self) -> dict[str, Any]:
        return {"sums": [None if t is None else t.clone() for t in self.sums], "count": self.count}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = [None if t is None else t.clone() for t in state["sums"]]
        self.count = int(state["count"])
