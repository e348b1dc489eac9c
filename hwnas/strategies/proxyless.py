"""ProxylessNAS (Cai et al., ICLR 2019): binary gates over paths (thesis Eqs. 3.3-3.4), one sampled path per
weight step, two sampled paths per architecture step with the BinaryConnect-style gradient, and the latency loss
CE + λ·E[LAT] with E[LAT] = Σ_i Σ_j p^i_j F(o^i_j) from the LUT.

Architecture step (the paper's Sec. 3.2.1 and its released implementation): per layer, draw two paths from the
multinomial p = softmax(α), renormalise their probabilities p̃, open one gate g by p̃, forward the gated path
with autograd and the closed one without (only its output is kept, for its gate gradient), then
∂L/∂α_i = Σ_j ∂L/∂g_j · p̃_j (δ_ij − p̃_i) for the two sampled i, j; after the optimizer step the two sampled α
are shifted so the probabilities of the paths not sampled stay as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hwnas.budget.costs import proxyless_expected_latency, proxyless_loss
from hwnas.budget.projection import ProjectionMethod
from hwnas.errors import ConfigError
from hwnas.strategies._chain import BudgetControl, ChainLogitsStrategy
from hwnas.strategies.base import SearchProblem, StepContext, StepOutput, set_arch_grads
from hwnas.supernet import Selection
from hwnas.supernet.sampling import sample_index, sample_without_replacement, uniform_index


@dataclass(frozen=True)
class ProxylessParams:
    """ProxylessNAS hyperparameters (released-code values unless said otherwise)."""

    lam: float = 0.1  # λ on E[LAT]/budget (the released code's 'add#linear': λ·(E[LAT] − T)/T, λ = 0.1)
    arch_lr: float = 0.05  # Adam learning rate of α (paper: 1e-3 over ~100 ImageNet epochs; searches here are short)
    arch_beta1: float = 0.0  # Adam β1 of α (released code: 0)
    arch_weight_decay: float = 0.0  # (released code: 0)
    paths: int = 2  # paths sampled per architecture step (paper: 2)
    budget_control: BudgetControl = "dual"  # 'dual': adapt λ so E[LAT] tracks the budget; 'argmax': so the larger of
    # E[LAT] and the argmax network's latency does; 'fixed': keep λ
    control_rate: float = 1.0  # dual step: log λ += rate · (E[LAT]/budget − 1) per architecture step
    projection: ProjectionMethod = "lp"  # budget repair when the argmax exceeds the budget: 'lp' or 'greedy'
    masked: bool = True  # candidates share weights (channel masks, superkernel) where they allow; the paper keeps
    # separate weights, which stay at chance here when one path is sampled per step (README, search quality)


class ProxylessStrategy(ChainLogitsStrategy):
    name = "proxyless"
    Params = ProxylessParams

    @classmethod
    def check_params(cls, p: ProxylessParams) -> None:
        if p.paths < 1:
            raise ConfigError("strategy 'proxyless': paths must be >= 1")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        self.arch_optimizer = torch.optim.Adam(self.logits, lr=p.arch_lr, betas=(p.arch_beta1, 0.999),
                                               weight_decay=p.arch_weight_decay)
        self.control = self.make_control(p.lam, 1e-3, 100.0)
        self._sampled: list[list[int]] = []
        self._before: list[torch.Tensor] = []

    def status(self) -> dict[str, float]:
        return {"lambda": self.control.value}

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        """One path per layer, drawn by p (uniformly during warm-up): binarize(p), Eq. 3.3."""
        selections = []
        with torch.no_grad():
            for theta in self.logits:
                size = len(theta)
                index = uniform_index(size, self.generator) if self.warmup else \
                    sample_index(F.softmax(theta, -1), self.generator)
                selections.append(Selection.one(index, size))
        logits = self.supernet(x, selections)
        return StepOutput(F.cross_entropy(logits, y), logits)

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        gates, selections, self._sampled = [], [], []
        for theta in self.logits:
            sampled = sample_without_replacement(F.softmax(theta.detach(), -1), self.params.paths, self.generator)
            local = F.softmax(theta.detach()[sampled], -1)
            gate = torch.zeros(len(sampled))
            opened = sample_index(local, self.generator)
            gate[opened] = 1.0
            gate.requires_grad_(True)
            weights = torch.zeros(len(theta)).index_copy(0, torch.tensor(sampled), gate)
            gates.append(gate)
            closed = tuple(path for i, path in enumerate(sampled) if i != opened)
            selections.append(Selection(weights, tuple(sampled), closed))
            self._sampled.append(sampled)
        ce = F.cross_entropy(self.supernet(x, selections), y)
        gate_grads = torch.autograd.grad(ce, gates)
        for theta, sampled, grad in zip(self.logits, self._sampled, gate_grads):
            local = F.softmax(theta.detach()[sampled], -1)
            binary = local * (grad - (grad * local).sum())  # Σ_j g_j p̃_j (δ_ij − p̃_i)
            full = torch.zeros_like(theta).index_copy(0, torch.tensor(sampled), binary)
            theta.grad = full if theta.grad is None else theta.grad + full
        expected = proxyless_expected_latency(self.probabilities(), self.cost)
        penalty = proxyless_loss(torch.zeros(()), (expected / self.problem.budget_ms).float(), lam=self.control.value)
        set_arch_grads(self.logits, penalty)
        self._before = [theta.detach()[s].clone() for theta, s in zip(self.logits, self._sampled)]
        return {"arch_loss": float(ce.detach() + penalty.detach()), "arch_ce": float(ce.detach())}

    def arch_update(self) -> None:
        super().arch_update()
        with torch.no_grad():  # keep the paths that were not sampled at their probabilities
            for theta, sampled, before in zip(self.logits, self._sampled, self._before):
                index = torch.tensor(sampled)
                offset = torch.logsumexp(theta[index], 0) - torch.logsumexp(before, 0)
                theta[index] -= offset
        self.update_control()



