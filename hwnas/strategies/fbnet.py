"""FBNet (Wu et al., CVPR 2019): a stochastic supernet whose layer choices are Gumbel-softmax samples of θ,
loss CE · α · log(LAT)^β with LAT(a) = Σ_l Σ_i m_{l,i} · LAT(b_{l,i}) from the LUT (thesis Eqs. 3.34-3.36),
temperature annealed every epoch, weights and θ trained on disjoint splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.errors import ConfigError
from hwnas.latency import fbnet_latency, fbnet_loss
from hwnas.projection import METHODS
from hwnas.strategies._chain import ChainLogitsStrategy
from hwnas.strategies.base import SearchProblem, StepContext, StepOutput, TradeoffController, set_arch_grads
from hwnas.supernet import Selection
from hwnas.supernet.sampling import gumbel_softmax

CONTROLS = ("dual", "fixed")


@dataclass(frozen=True)
class FBNetParams:
    """FBNet's hyperparameters (paper values unless said otherwise)."""

    alpha: float = 0.2  # α in CE · α · log(LAT)^β (paper: 0.2)
    beta: float = 0.6  # β, the accuracy/latency trade-off (paper: 0.6); the starting value under 'dual' control
    tau0: float = 5.0  # initial Gumbel-softmax temperature (paper: 5.0)
    tau_decay: float = 0.956  # temperature factor per epoch (paper: exp(-0.045))
    arch_lr: float = 0.01  # Adam learning rate of θ (paper: 0.01)
    arch_weight_decay: float = 5e-4  # L2 on θ (paper: 5e-4)
    hard: bool = False  # one-hot straight-through samples (one path per step) instead of soft masks (all paths)
    budget_control: str = "dual"  # 'dual': adapt β so E[LAT] tracks the budget; 'fixed': keep the paper's β
    control_rate: float = 1.0  # dual step: log β += rate · (E[LAT]/budget − 1) per architecture step
    projection: str = "lp"  # budget repair when the argmax exceeds the budget: 'lp' or 'greedy'
    masked: bool = False  # share weights where the candidates allow (FBNetV2's masks: soft masks then mix kernel
    # and width marginals); needed for `hard` on other spaces, impossible on FBNet's (grouped ops, projecting skip)


class FBNetStrategy(ChainLogitsStrategy):
    """FBNet's DNAS on a chain space. LAT enters the loss in microseconds so log(LAT) > 0 even for sub-millisecond
    networks (the paper's phone latencies were tens of milliseconds)."""

    name = "fbnet"
    Params = FBNetParams

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        if p.budget_control not in CONTROLS or p.projection not in METHODS or p.tau0 <= 0:
            raise ConfigError(f"strategy 'fbnet': budget_control must be one of {CONTROLS}, projection one of "
                              f"{METHODS}, tau0 > 0")
        self.arch_optimizer = torch.optim.Adam(self.logits, lr=p.arch_lr, weight_decay=p.arch_weight_decay)
        self.control = TradeoffController(p.beta, p.control_rate, 0.05, 20.0, p.budget_control == "dual")
        self.tau = p.tau0

    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None:
        super().start_epoch(epoch, epochs, warmup)
        self.tau = self.params.tau0 * self.params.tau_decay ** epoch

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
        lat_us = fbnet_latency(masks, self.cost) * 1000.0
        loss = fbnet_loss(ce, lat_us.float(), alpha=self.params.alpha, beta=self.control.value)
        set_arch_grads(self.logits, loss)
        return {"arch_loss": float(loss.detach()), "arch_ce": float(ce.detach()),
                "sampled_ms": float(lat_us.detach()) / 1000.0}

    def arch_update(self) -> None:
        super().arch_update()
        self.update_control()

    def extra_state(self) -> dict[str, Any]:
        return {**super().extra_state(), "tau": self.tau}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        super().load_extra_state(state)
        self.tau = float(state.get("tau", self.tau))
