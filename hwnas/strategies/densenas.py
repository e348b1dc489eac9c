"""DenseNAS (Fang et al., CVPR 2020): search block widths and counts through routing paths of a densely connected
space, with the chained cost estimation c̃ost^i = cost^i_b + Σ_j p_ij (cost^{ij}_align + c̃ost^j) (thesis
Eqs. 3.42-3.43) and the loss CE + λ · log_τ(c̃ost) (Eq. 3.44).

Following the released search: weight steps sample one op per mixed layer by its softmax ('prob' policy) with
routing weights p fixed; architecture steps sample two ops per mixed layer, weight them by the softmax of their
α, keep every routing path weighted by p, and update α and β with Adam. Derivation: the most probable path by
dynamic programming over the routing DAG (the paper's Viterbi), ops by argmax; when that misses the band
[floor · budget, budget], the paths that maximise Σ log p + Σ log w − μ · latency for a range of multipliers μ
are candidates, each path's ops are projected into the band like a chain space's, and the most probable wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.budget.costs import DenseCost, dense_cost, densenas_chained_cost, densenas_loss
from hwnas.budget.projection import ARGMAX
from hwnas.errors import ConfigError, HwnasError
from hwnas.spaces.dense import DenseChoice, DenseSpace
from hwnas.strategies.base import (
    BaseStrategy,
    Derivation,
    SearchProblem,
    StepContext,
    StepOutput,
    TradeoffController,
    set_arch_grads,
)
from hwnas.supernet.chain import Selection
from hwnas.supernet.dense import DenseSupernet
from hwnas.supernet.sampling import sample_index, sample_without_replacement, uniform_index

DenseBudgetControl = Literal["dual", "fixed"]


@dataclass(frozen=True)
class DenseNASParams:
    """DenseNAS hyperparameters (released MobileNetV2 search config unless said otherwise)."""

    lam: float = 0.15  # λ of the cost term (released config: sub_loss_factor 0.15)
    tau: float = 15.0  # base τ of log_τ(cost in ms) (released config: log_base 15)
    arch_lr: float = 0.01  # Adam learning rate of α and β (released: 3e-4 over 100 ImageNet epochs)
    arch_weight_decay: float = 1e-3  # (released: 1e-3)
    arch_ops: int = 2  # ops sampled per mixed layer in an architecture step
    budget_control: DenseBudgetControl = "dual"  # 'dual': adapt λ so the chained cost tracks the budget; 'fixed': keep
    # λ
    control_rate: float = 1.0  # dual step: log λ += rate · (cost/budget − 1) per architecture step
    masked: bool = True  # a layer's candidates share weights (channel masks, superkernel) where they allow; the
    # paper keeps separate weights, which one sampled op per step leaves at chance in short searches (README)


class DenseNASStrategy(BaseStrategy):
    name = "densenas"
    space_kinds = ("dense",)
    Params = DenseNASParams

    @classmethod
    def check_params(cls, p: DenseNASParams) -> None:
        if p.arch_ops < 1 or p.tau <= 1:
            raise ConfigError("strategy 'densenas': arch_ops must be >= 1 and tau > 1")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        self.space: DenseSpace = problem.space
        self.cost: DenseCost = dense_cost(self.space, problem.latency)
        self.supernet = DenseSupernet(self.space, masked=p.masked)
        self.edge_alpha = [torch.zeros(len(e.candidates), requires_grad=True) for e in self.space.edges]
        self.layer_alpha = [[torch.zeros(len(self.space.layer_specs[n]), requires_grad=True) for _ in range(b.layers)]
                            for n, b in enumerate(self.space.blocks)]
        self.beta = [torch.zeros(len(self.space.out_edges(n)), requires_grad=True)
                     for n in range(self.space.num_nodes - 1)]
        self.arch_optimizer = torch.optim.Adam(self.arch_parameters(), lr=p.arch_lr, betas=(0.5, 0.999),
                                               weight_decay=p.arch_weight_decay)
        self.control = TradeoffController(p.lam, p.control_rate, 1e-3, 100.0, p.budget_control == "dual")

    def arch_parameters(self) -> list[torch.Tensor]:
        return [*self.edge_alpha, *(a for layers in self.layer_alpha for a in layers), *self.beta]

    def edge_probs(self) -> torch.Tensor:
        """p_ij per edge: the softmax over each node's outgoing edges."""
        probs = torch.zeros(len(self.space.edges))
        for node, logits in enumerate(self.beta):
            index = torch.tensor([e.index for e in self.space.out_edges(node)])
            probs = probs.index_add(0, index, F.softmax(logits, -1))
        return probs

    def _chained(self) -> torch.Tensor:
        return densenas_chained_cost(self.edge_probs(), [F.softmax(a, -1) for a in self.edge_alpha],
                                     [[F.softmax(a, -1) for a in layers] for layers in self.layer_alpha], self.cost)

    @torch.no_grad()
    def expected_latency_ms(self) -> float:
        return float(self._chained())

    def status(self) -> dict[str, float]:
        return {"lambda": self.control.value}

    # -- steps --------------------------------------------------------------------------------------------
    def _one_op(self, logits: torch.Tensor) -> Selection:
        size = len(logits)
        index = uniform_index(size, self.generator) if self.warmup else \
            sample_index(F.softmax(logits.detach(), -1), self.generator)
        return Selection.one(index, size)

    def _two_ops(self, logits: torch.Tensor) -> Selection:
        sampled = sample_without_replacement(F.softmax(logits.detach(), -1), self.params.arch_ops, self.generator)
        local = F.softmax(logits[sampled], -1)
        weights = torch.zeros(len(logits)).index_copy(0, torch.tensor(sampled), local)
        return Selection(weights, tuple(sampled))

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        with torch.no_grad():
            edges = [self._one_op(a) for a in self.edge_alpha]
            layers = [[self._one_op(a) for a in block] for block in self.layer_alpha]
            probs = self.edge_probs()
        logits = self.supernet(x, edges, layers, probs)
        return StepOutput(F.cross_entropy(logits, y), logits)

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        edges = [self._two_ops(a) for a in self.edge_alpha]
        layers = [[self._two_ops(a) for a in block] for block in self.layer_alpha]
        ce = F.cross_entropy(self.supernet(x, edges, layers, self.edge_probs()), y)
        cost = self._chained()
        loss = densenas_loss(ce, cost.float(), lam=self.control.value, tau=self.params.tau)
        set_arch_grads(self.arch_parameters(), loss)
        return {"arch_loss": float(loss.detach()), "arch_ce": float(ce.detach()), "sampled_ms": float(cost.detach())}

    def arch_update(self) -> None:
        super().arch_update()
        self.control.update(self.expected_latency_ms(), self.problem.budget_ms)

    # -- derivation ---------------------------------------------------------------------------------------
    def _best(self, mu: float) -> DenseChoice:
        """argmax over paths and ops of Σ log p + Σ log w − μ · scale · latency (dynamic programming)."""
        space, cost = self.space, self.cost
        log_p = torch.log(self.edge_probs().clamp_min(1e-12)).numpy()

        def pick(logits: torch.Tensor, times: torch.Tensor) -> tuple[int, float]:
            value = F.log_softmax(logits.detach(), -1).numpy() - mu * cost.calibration.scale * times.numpy()
            best = int(np.argmax(value))
            return best, float(value[best])

        layer_best = [[pick(a, cost.layer_ms[n]) for a in block] for n, block in enumerate(self.layer_alpha)]
        edge_best = [pick(a, cost.edge_ms[e]) for e, a in enumerate(self.edge_alpha)]
        value = {0: 0.0}
        back: dict[int, int] = {}
        for node in range(1, space.num_nodes):
            inner = sum(v for _, v in layer_best[node - 1]) if node < space.num_nodes - 1 else 0.0
            options = [(value[e.src] + log_p[e.index] + edge_best[e.index][1], e.index)
                       for e in space.in_edges(node) if e.src in value]
            if options:
                best_value, best_edge = max(options)
                value[node], back[node] = best_value + inner, best_edge
        path, node = [space.num_nodes - 1], space.num_nodes - 1
        while node != 0:
            node = space.edges[back[node]].src
            path.append(node)
        path.reverse()
        edge_ops = tuple(edge_best[space.edge(a, b).index][0] for a, b in zip(path, path[1:]))
        layer_ops = tuple(tuple(i for i, _ in layer_best[n - 1]) for n in path[1:-1])
        return DenseChoice(tuple(path), edge_ops, layer_ops)

    def argmax_choice(self) -> DenseChoice:
        return self._best(0.0)

    def _path_choice(self, path: tuple[int, ...], budget: float) -> tuple[DenseChoice, float, str] | None:
        """The ops of one path as a chain projection (within budget, filled to the floor); with its score."""
        from hwnas.budget.costs import ChainCost
        from hwnas.budget.projection import project_chain

        cost = self.cost
        edges = [self.space.edge(a, b).index for a, b in zip(path, path[1:])]
        layers = [(node - 1, i) for node in path[1:-1] for i in range(self.space.blocks[node - 1].layers)]
        times = [cost.edge_ms[e] for e in edges] + [cost.layer_ms[n] for n, _ in layers]
        chain = ChainCost(cost.fixed_ms, tuple(times), cost.calibration)
        if chain.range_ms[0] > budget:
            return None
        scores = [F.log_softmax(self.edge_alpha[e].detach(), -1).numpy() for e in edges]
        scores += [F.log_softmax(self.layer_alpha[n][i].detach(), -1).numpy() for n, i in layers]
        projection = project_chain(scores, chain, budget, "lp", floor=self.problem.budget_floor)
        picked = list(projection.choices)
        layer_ops, offset = [], len(edges)
        for node in path[1:-1]:
            count = self.space.blocks[node - 1].layers
            layer_ops.append(tuple(picked[offset: offset + count]))
            offset += count
        log_p = torch.log(self.edge_probs().clamp_min(1e-12))
        score = float(sum(log_p[e] for e in edges)) + sum(float(s[c]) for s, c in zip(scores, picked))
        return DenseChoice(path, tuple(picked[: len(edges)]), tuple(layer_ops)), score, projection.method

    @torch.no_grad()
    def derive(self) -> Derivation:
        """Viterbi path and argmax ops; outside [floor·budget, budget], the best of the paths a latency
        multiplier μ (negative: rewarding latency; positive: penalising it) selects, each with its ops projected
        into the band, by path log-probability plus op log-probabilities."""
        predict = self.problem.latency.predict
        budget, floor = self.problem.budget_ms, self.problem.budget_floor * self.problem.budget_ms
        choice = self._best(0.0)
        argmax_ms = predict(self.space.arch(choice))
        method = ARGMAX
        if not floor <= argmax_ms <= budget:
            paths = dict.fromkeys(self._best(sign * 4.0 ** k).path for sign in (-1, 1) for k in range(-6, 16))
            found = [r for r in (self._path_choice(path, budget) for path in paths) if r is not None]
            if not found:
                raise HwnasError("DenseNAS: no path meets the budget; this is a bug (the budget was checked)")
            in_band = [r for r in found if predict(self.space.arch(r[0])) >= floor]
            if in_band:
                choice, _, how = max(in_band, key=lambda r: r[1])
            else:
                choice, _, how = max(found, key=lambda r: predict(self.space.arch(r[0])))
            method = ARGMAX.then("route", *how.steps)
        arch = self.space.arch(choice)
        return Derivation(arch, predict(arch), argmax_ms, budget, method,
                          {"path": list(choice.path), "edge_ops": list(choice.edge_ops),
                           "layer_ops": [list(ops) for ops in choice.layer_ops]})

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet.forward_choice(x, self.argmax_choice())

    def arch_weights(self) -> list[tuple[str, np.ndarray]]:
        rows = [(f"route {n}", F.softmax(b, -1).detach().numpy()) for n, b in enumerate(self.beta)]
        rows += [(f"block {n + 1}.{i}", F.softmax(a, -1).detach().numpy())
                 for n, block in enumerate(self.layer_alpha) for i, a in enumerate(block)]
        return rows

    def extra_state(self) -> dict[str, Any]:
        return {"control": self.control.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if state.get("control"):
            self.control.load_state_dict(state["control"])
