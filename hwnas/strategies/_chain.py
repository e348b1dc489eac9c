"""What the softmax-parametrised chain strategies (FBNet, ProxylessNAS) share: one logit vector per position,
expected latency Σ_l Σ_i p_{l,i} t_{l,i}, argmax validation, and derivation with budget repair."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.budget.costs import ChainCost, chain_cost, proxyless_expected_latency
from hwnas.budget.projection import project_chain
from hwnas.strategies.base import BaseStrategy, Derivation, SearchProblem, TradeoffController
from hwnas.supernet import ChainSupernet

BudgetControl = Literal["dual", "argmax", "fixed"]  # budget_control: what the trade-off coefficient follows


class ChainLogitsStrategy(BaseStrategy):
    """A chain supernet with architecture logits θ_l per position (softmax probabilities); its layers share weights
    where the candidates allow when the strategy's params say `masked`."""

    space_kinds = ("chain",)

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        self.space = problem.space
        self.cost: ChainCost = chain_cost(self.space, problem.latency)
        self.supernet = ChainSupernet(self.space, masked=getattr(self.params, "masked", False))
        self.logits = [torch.zeros(len(p.candidates), requires_grad=True) for p in self.space.positions]
        self.control: TradeoffController | None = None

    def arch_parameters(self) -> list[torch.Tensor]:
        return self.logits

    def probabilities(self) -> list[torch.Tensor]:
        return [F.softmax(theta, dim=-1) for theta in self.logits]

    def argmax_choices(self) -> list[int]:
        return [int(theta.argmax()) for theta in self.logits]

    @torch.no_grad()
    def expected_latency_ms(self) -> float:
        return float(proxyless_expected_latency(self.probabilities(), self.cost))

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_choices(x, self.argmax_choices())

    def arch_weights(self) -> list[tuple[str, np.ndarray]]:
        return [(f"{p.index} s{p.stage}", prob.detach().numpy()) for p, prob in
                zip(self.space.positions, self.probabilities())]

    def candidate_labels(self) -> list[list[str]]:
        return [[op.token(self.space.act) for op in p.candidates] for p in self.space.positions]

    @torch.no_grad()
    def choice_log_probs(self) -> list[np.ndarray]:
        """log P(candidate) per position under the final architecture distribution (for hwnas.search.selection)."""
        return [F.log_softmax(theta, dim=-1).numpy().astype(float) for theta in self.logits]

    def derivation_scores(self) -> list[np.ndarray]:
        """What derive() maximises within the budget, per position and candidate (additive over positions)."""
        return self.choice_log_probs()

    @torch.no_grad()
    def derive(self) -> Derivation:
        scores = self.derivation_scores()
        projection = project_chain(scores, self.cost, self.problem.budget_ms, self.params.projection,
                                   floor=self.problem.budget_floor)
        arch = self.space.arch(list(projection.choices))
        return Derivation(arch, self.problem.latency.predict(arch), projection.argmax_ms, self.problem.budget_ms,
                          projection.method, {"choices": list(projection.choices)})

    def make_control(self, value: float, low: float, high: float) -> TradeoffController:
        """The trade-off coefficient under the params' budget_control and control_rate, clipped to [low, high]."""
        return TradeoffController(value, self.params.control_rate, low, high, self.params.budget_control != "fixed")

    def update_control(self) -> None:
        """Dual step on the trade-off coefficient; under budget_control=argmax it answers to the argmax network too,
        which sits above E[LAT] while the distribution is still flat (and would otherwise need repair)."""
        if self.control is not None:
            tracked = self.expected_latency_ms()
            if self.params.budget_control == "argmax":
                tracked = max(tracked, self.cost.of_choices(self.argmax_choices()))
            self.control.update(tracked, self.problem.budget_ms)

    def extra_state(self) -> dict[str, Any]:
        return {"control": self.control.state_dict() if self.control else None}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if self.control is not None and state.get("control"):
            self.control.load_state_dict(state["control"])
