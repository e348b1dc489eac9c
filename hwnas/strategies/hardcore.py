"""HardCoRe-NAS (Nayman et al., ICML 2021): the hard constraint E[LAT](α, β) ≤ T kept throughout the search by
block-coordinate stochastic Frank-Wolfe (BCSFW), then a projection to a discrete architecture within T.

α_p: probabilities over the candidate blocks of position p (micro search, thesis Eq. 3.41's α^s_{b,c}); β_s:
probabilities over the depths of a depth-searched stage (macro search, β^s_{b'}). The loss is the plain task loss
(thesis Eq. 3.40); the latency enters only as the constraint, bilinear in (α, β) (hwnas.budget.costs).

BCSFW step (the paper's Algorithm 1 and its released optimizer): estimate ∂L/∂α or ∂L/∂β on an architecture batch
as the mean over `samples` Gumbel-softmax straight-through architecture samples (one sample's gradient is mostly
noise on a small architecture split; the mean of a few is a steadier LP objective); pick a block (α or β, at random
from the shared generator); with the other block fixed the constraint is linear, so solve the linear program
s = argmin_{s ∈ Δ × ... × Δ, LAT(s) ≤ T} ⟨∇, s⟩ (scipy `linprog`), and move x ← x + γ_k (s − x) with
γ_k = γ_max · 2n / (k + 2n), n = 2. x and s both satisfy the constraint, so every iterate does.
Projection (the paper's Sec. 3.4): alternate the same linear programs with the objective −α (resp. −β) and step 1;
each optimum is a vertex with at most one fractional position, rounded to its faster option, so the result is
discrete and within T.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.budget.costs import ChainCost, DepthStage, chain_cost, depth_stages, hardcore_expected_latency
from hwnas.budget.knapsack import (
    block_sum_at,
    block_sum_budget,
    fill_to_floor,
    masked_scores,
    round_to_choices,
    solve_lp,
)
from hwnas.budget.projection import ARGMAX
from hwnas.errors import ConfigError, HwnasError
from hwnas.strategies.base import BaseStrategy, Derivation, SearchProblem, StepContext, StepOutput
from hwnas.supernet import ChainSupernet, Selection
from hwnas.supernet.sampling import gumbel_softmax, uniform_index
from hwnas.units import BUDGET_MARGIN, tight_limit


@dataclass(frozen=True)
class HardCoReParams:
    """HardCoRe-NAS hyperparameters."""

    max_gamma: float = 0.5  # γ_max of the Frank-Wolfe step size γ_k = γ_max · 4 / (k + 4)
    momentum: float = 0.0  # gradient averaging d = m·d + (1 − m)·g before each linear program (0: none)
    block: Literal["random", "alternate"] = "random"  # which block each step updates: 'random' (coin flip) or
    # 'alternate'
    tau: float = 1.0  # Gumbel-softmax temperature of the straight-through samples of α and β
    samples: int = 4  # architectures sampled per gradient estimate, each run on the whole architecture batch
    masked: bool = True  # weight-sharing masked layers (channel masks + superkernel) where candidates allow


def _one_hot(solution: Sequence[np.ndarray], cost: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """An LP solution rounded to one option per group (hwnas.budget.knapsack), as one-hot vectors."""
    return [torch.from_numpy(np.eye(len(x))[c]) for x, c in zip(solution, round_to_choices(solution, cost))]


class HardCoReStrategy(BaseStrategy):
    name = "hardcore"
    space_kinds = ("chain",)
    Params = HardCoReParams

    @classmethod
    def check_params(cls, p: HardCoReParams) -> None:
        if not 0 < p.max_gamma <= 1 or not 0 <= p.momentum < 1 or p.samples < 1:
            raise ConfigError("strategy 'hardcore': 0 < max_gamma <= 1, 0 <= momentum < 1 and samples >= 1 needed")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        self.space = problem.space
        self.cost: ChainCost = chain_cost(self.space, problem.latency)
        self.supernet = ChainSupernet(self.space, masked=p.masked)
        self.stages: dict[int, DepthStage] = depth_stages(self.space)
        optional = {pos for stage in self.stages.values() for pos in stage.positions[stage.min_depth:]}
        self.skip_index = [pos.skip_index for pos in self.space.positions]
        self.allowed = [np.array([not (pos.index in optional and i == pos.skip_index)
                                  for i in range(len(pos.candidates))]) for pos in self.space.positions]
        alpha = [torch.tensor(a / a.sum(), dtype=torch.float64) for a in (m.astype(float) for m in self.allowed)]
        beta = {s: torch.full((len(st.depths),), 1.0 / len(st.depths), dtype=torch.float64)
                for s, st in self.stages.items()}
        alpha, beta = self._feasible_start(alpha, beta)
        self.alpha = [a.requires_grad_(True) for a in alpha]
        self.beta_keys = sorted(beta)
        self.beta = [beta[s].requires_grad_(True) for s in self.beta_keys]
        self.k = 0
        self._buffers: dict[str, list[np.ndarray] | None] = {"alpha": None, "beta": None}

    # -- parameters and latency ---------------------------------------------------------------------------
    def arch_parameters(self) -> list[torch.Tensor]:
        return [*self.alpha, *self.beta]

    def _beta_map(self, beta: Sequence[torch.Tensor] | None = None) -> dict[int, torch.Tensor]:
        return dict(zip(self.beta_keys, beta if beta is not None else self.beta))

    def latency_of(self, alpha: Sequence[torch.Tensor], beta: Mapping[int, torch.Tensor]) -> float:
        with torch.no_grad():
            return float(hardcore_expected_latency(alpha, beta, self.stages, self.skip_index, self.cost))

    def expected_latency_ms(self) -> float:
        return self.latency_of(self.alpha, self._beta_map())

    def _feasible_start(self, alpha: list[torch.Tensor], beta: dict[int, torch.Tensor]):
        """The uniform point if it meets T, else the point nearest to it on the segment towards the fastest
        architecture that does (the paper starts from a QP projection of the uniform point; this is the same idea
        along one line)."""
        budget = self.problem.budget_ms * (1 - BUDGET_MARGIN)
        if self.latency_of(alpha, beta) <= budget:
            return alpha, beta
        fast_alpha = []
        for a, allowed, t in zip(alpha, self.allowed, self.cost.candidates_ms):
            times = np.where(allowed, t.numpy(), np.inf)
            fast_alpha.append(torch.nn.functional.one_hot(torch.tensor(int(np.argmin(times))), len(a)).double())
        fast_beta = {}
        for s, stage in self.stages.items():
            costs = []
            for depth in stage.depths:
                one = torch.zeros(len(stage.depths), dtype=torch.float64)
                one[stage.depths.index(depth)] = 1.0
                costs.append(self.latency_of(fast_alpha, {**beta, s: one}))
            fast_beta[s] = torch.zeros(len(stage.depths), dtype=torch.float64)
            fast_beta[s][int(np.argmin(costs))] = 1.0

        def mix(lam: float):
            return ([(1 - lam) * a + lam * f for a, f in zip(alpha, fast_alpha)],
                    {s: (1 - lam) * beta[s] + lam * fast_beta[s] for s in beta})

        grid = np.linspace(0, 1, 101)
        feasible = next(lam for lam in grid if self.latency_of(*mix(lam)) <= budget or lam == 1.0)
        low, high = max(0.0, feasible - 0.01), feasible
        for _ in range(30):
            middle = (low + high) / 2
            low, high = (low, middle) if self.latency_of(*mix(middle)) <= budget else (middle, high)
        return mix(high)

    # -- linear pieces of the bilinear constraint ---------------------------------------------------------
    def _presence(self, beta: Mapping[int, torch.Tensor]) -> np.ndarray:
        presence = np.ones(len(self.alpha))
        for s, stage in self.stages.items():
            b = beta[s].detach().numpy()
            for block, pos in enumerate(stage.positions, start=1):
                presence[pos] = sum(w for w, depth in zip(b, stage.depths) if depth >= block)
        return presence

    def _skip_ms(self, position: int) -> float:
        index = self.skip_index[position]
        return float(self.cost.candidates_ms[position][index]) if index is not None else 0.0

    def _alpha_constraint(self, beta: Mapping[int, torch.Tensor]) -> tuple[list[np.ndarray], float]:
        """LAT = Σ_p ⟨coef_p, α_p⟩ + const for fixed β; returns (coef, T − const)."""
        presence = self._presence(beta)
        coef = [self.cost.calibration.scale * presence[p] * t.numpy() for p, t in enumerate(self.cost.candidates_ms)]
        const = self.cost.calibrate(self.cost.fixed_ms + sum((1 - presence[p]) * self._skip_ms(p)
                                                             for p in range(len(self.alpha))))
        return coef, tight_limit(self.problem.budget_ms) - const

    def _beta_constraint(self, alpha: Sequence[torch.Tensor]) -> tuple[list[np.ndarray], float]:
        """LAT = Σ_s ⟨coef_s, β_s⟩ + const for fixed α, coef_{s,d} = Σ_{b ≤ d} (A_b − skip_b)."""
        block_ms = [float((a.detach() * t).sum()) for a, t in zip(alpha, self.cost.candidates_ms)]
        in_stages = {pos for stage in self.stages.values() for pos in stage.positions}
        const = sum(block_ms[p] for p in range(len(alpha)) if p not in in_stages)
        coef = []
        for s in self.beta_keys:
            stage = self.stages[s]
            const += sum(self._skip_ms(p) for p in stage.positions)
            gains = np.cumsum([block_ms[p] - self._skip_ms(p) for p in stage.positions])
            coef.append(self.cost.calibration.scale * np.array([gains[depth - 1] for depth in stage.depths]))
        return coef, tight_limit(self.problem.budget_ms) - self.cost.calibrate(self.cost.fixed_ms + const)

    def _solve_alpha(self, objective: Sequence[np.ndarray],
                     beta: Mapping[int, torch.Tensor]) -> list[np.ndarray] | None:
        coef, limit = self._alpha_constraint(beta)
        return solve_lp(objective, coef, limit, self.allowed)

    # -- sampling and steps -------------------------------------------------------------------------------
    def _logits(self, probs: torch.Tensor, allowed: np.ndarray | None = None) -> torch.Tensor:
        logits = torch.log(probs.clamp_min(1e-12))
        if allowed is not None:
            logits = torch.where(torch.from_numpy(allowed), logits, torch.full_like(logits, -float("inf")))
        return logits.float()

    def _sample(self, differentiable: bool) -> tuple[list[Selection], dict[int, torch.Tensor]]:
        selections, depth = [], {}
        tau = self.params.tau
        for a, allowed in zip(self.alpha, self.allowed):
            if self.warmup:
                options = np.flatnonzero(allowed)
                index = int(options[uniform_index(len(options), self.generator)])
                selections.append(Selection.one(index, len(a)))
                continue
            weights, index = gumbel_softmax(self._logits(a, allowed), tau, self.generator, hard=True)
            selections.append(Selection(weights if differentiable else weights.detach(), (int(index),)))
        for s, b in zip(self.beta_keys, self.beta):
            if self.warmup:
                weights = torch.zeros(len(b))
                weights[uniform_index(len(b), self.generator)] = 1.0
            else:
                weights, _ = gumbel_softmax(self._logits(b), tau, self.generator, hard=True)
            depth[s] = weights if differentiable else weights.detach()
        return selections, depth

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            selections, depth = self._sample(differentiable=False)
        logits = self.supernet(x, selections, depth)
        return StepOutput(F.cross_entropy(logits, y), logits)

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        params = self.arch_parameters()
        for param in params:
            param.grad = torch.zeros_like(param)
        losses = []
        for _ in range(self.params.samples):
            selections, depth = self._sample(differentiable=True)
            loss = F.cross_entropy(self.supernet(x, selections, depth), y)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
            losses.append(float(loss.detach()))
            del loss  # autograd.grad skips the branches no α or β feeds (the stem): they hold activations till now
            for param, grad in zip(params, grads):
                if grad is not None:
                    param.grad += grad.detach().to(param.dtype) / self.params.samples
        return {"arch_loss": float(np.mean(losses))}

    def _averaged(self, name: str, grads: list[np.ndarray]) -> list[np.ndarray]:
        m = self.params.momentum
        previous = self._buffers[name]
        if m > 0 and previous is not None:
            grads = [m * b + (1 - m) * g for b, g in zip(previous, grads)]
        self._buffers[name] = grads
        return grads

    @torch.no_grad()
    def arch_update(self) -> None:
        """One BCSFW step on α or β; the iterate stays within the budget."""
        update_beta = bool(self.beta) and (
            (self.k % 2 == 1) if self.params.block == "alternate" else
            bool(torch.rand(1, generator=self.generator) < 0.5))
        gamma = self.params.max_gamma * 4 / (self.k + 4)
        self.k += 1
        if update_beta:
            grads = self._averaged("beta", [b.grad.numpy().astype(float) for b in self.beta])
            coef, limit = self._beta_constraint(self.alpha)
            target = solve_lp(grads, coef, limit)
            current = self.beta
        else:
            grads = self._averaged("alpha", [a.grad.numpy().astype(float) for a in self.alpha])
            target = self._solve_alpha(grads, self._beta_map())
            current = self.alpha
        if target is None:
            return  # numerically infeasible linear program: keep the (feasible) iterate
        for x, s in zip(current, target):
            x += gamma * (torch.from_numpy(s) - x)
        if self.expected_latency_ms() > self.problem.budget_ms * (1 + BUDGET_MARGIN):
            raise HwnasError("HardCoRe-NAS: a Frank-Wolfe step left the budget; this is a bug")

    def status(self) -> dict[str, float]:
        return {"fw_steps": float(self.k), "slack_ms": self.problem.budget_ms - self.expected_latency_ms()}

    # -- evaluation and derivation ------------------------------------------------------------------------
    def _choices(self, alpha: Sequence[np.ndarray], beta: Mapping[int, np.ndarray]) -> list[int]:
        choices = [int(np.argmax(np.where(m, a, -1.0))) for a, m in zip(alpha, self.allowed)]
        for s, stage in self.stages.items():
            depth = stage.depths[int(np.argmax(beta[s]))]
            for block, pos in enumerate(stage.positions, start=1):
                if block > depth:
                    choices[pos] = self.skip_index[pos]
        return choices

    def argmax_choices(self) -> list[int]:
        return self._choices([a.detach().numpy() for a in self.alpha],
                             {s: b.detach().numpy() for s, b in self._beta_map().items()})

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_choices(x, self.argmax_choices())

    def arch_weights(self) -> list[tuple[str, np.ndarray]]:
        rows = [(f"{p.index} s{p.stage}", a.detach().numpy()) for p, a in zip(self.space.positions, self.alpha)]
        rows += [(f"depth s{s}", b.detach().numpy()) for s, b in zip(self.beta_keys, self.beta)]
        return rows

    @torch.no_grad()
    def derive(self) -> Derivation:
        argmax = self.argmax_choices()
        argmax_ms = self.cost.of_choices(argmax)
        choices, method = argmax, ARGMAX
        if argmax_ms > self.problem.budget_ms:
            choices, method = self._project(), ARGMAX.then("lp")
        floor = self.problem.budget_floor * self.problem.budget_ms
        if self.cost.of_choices(choices) < floor:
            choices = self._fill(choices)
            method = method.then("fill")
        arch = self.space.arch(choices)
        return Derivation(arch, self.problem.latency.predict(arch), argmax_ms, self.problem.budget_ms, method,
                          {"choices": choices})

    @torch.no_grad()
    def choice_log_probs(self) -> list[np.ndarray]:
        """Marginal log-probability of each candidate at each position: log(P_b · α_c) for a block, log(1 − P_b)
        for the skip of a depth-searched position (P_b: the probability that its stage is deep enough); -inf where
        a candidate is not allowed."""
        presence = self._presence(self._beta_map())
        rows = []
        for p, (a, allowed) in enumerate(zip(self.alpha, self.allowed)):
            row = np.log(np.clip(presence[p] * a.detach().numpy(), 1e-12, None))
            row = np.where(allowed, row, -np.inf)
            if not allowed.all():  # the skip of an optional position: the block is absent
                row[self.skip_index[p]] = np.log(max(1 - presence[p], 1e-12))
            rows.append(row)
        return rows

    def _fill(self, choices: list[int]) -> list[int]:
        """Fill up to the budget floor by the marginal log-probability of each candidate at each position."""
        rows = self.choice_log_probs()
        allowed = [np.isfinite(row) for row in rows]
        scores = masked_scores(rows, allowed)
        lat = [t.numpy() for t in self.cost.candidates_ms]
        budget = self.problem.budget_ms
        return fill_to_floor(scores, lat, choices, block_sum_at(self.cost, self.problem.budget_floor * budget),
                             block_sum_budget(self.cost, budget), allowed)

    def _project(self) -> list[int]:
        """Alternating vertex LPs with importance α (β), rounded to one-hot after each: discrete, within T."""
        alpha = [a.detach().clone() for a in self.alpha]
        beta = {s: b.detach().clone() for s, b in self._beta_map().items()}
        alpha, beta = self._feasible_start(alpha, beta)  # a no-op for iterates of the search (always feasible)
        importance_a = [-a.detach().numpy() for a in self.alpha]
        importance_b = [-b.detach().numpy() for b in self.beta]
        for _ in range(3):
            if self.beta_keys:
                coef, limit = self._beta_constraint(alpha)
                solved = solve_lp(importance_b, coef, limit)
                if solved is None:
                    raise HwnasError("HardCoRe-NAS projection: the depth linear program has no solution")
                beta = dict(zip(self.beta_keys, _one_hot(solved, coef)))
            solved = self._solve_alpha(importance_a, beta)
            if solved is None:
                raise HwnasError("HardCoRe-NAS projection: the block linear program has no solution")
            full_coef = [self.cost.calibration.scale * t.numpy() + np.where(m, 0.0, np.inf) for t, m in
                         zip(self.cost.candidates_ms, self.allowed)]
            alpha = _one_hot(solved, full_coef)
        return self._choices([a.numpy() for a in alpha], {s: b.numpy() for s, b in beta.items()})

    def extra_state(self) -> dict[str, Any]:
        # momentum buffers as tensors: a checkpoint holds tensors and plain values only (read with weights_only)
        return {"k": self.k, "buffers": {name: None if grads is None else [torch.from_numpy(np.asarray(g))
                                                                           for g in grads]
                                         for name, grads in self._buffers.items()}}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.k = int(state.get("k", 0))
        for name, grads in (state.get("buffers") or {}).items():
            self._buffers[name] = None if grads is None else [np.asarray(g) for g in grads]
