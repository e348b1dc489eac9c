"""D-DARTS (thesis `ddarts-thesis.txt`, chapter 4): every cell of the network searches its own architecture
(Sec. 4.1.1) with FairDARTS' sigmoid weights, and its own loss L_T^i = L_CE + w_01 · L_01^i + w_AB · L_AB^i
(Eqs. 4.2-4.5, Algorithm 1), where the ablation loss compares each cell's marginal contribution to the supernet
loss with the mean contribution. Per-cell optimizers are one Adam over the per-cell tensors (Adam is
element-wise, so that is the same update). Derivation parses each cell (`sparse`: the best operation of an edge
when its sigmoid reaches σ_t; `darts`: the best edges per node) and grows the network with Algorithm 2 when the
deployed space has more cells than the searched one (`hwnas.cells.grow`). DARTOpti (Sec. 4.1.4) is this strategy
on the `dartopti` space, started from a handcrafted architecture (`init_arch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from hwnas.cells.genotype import Genotype
from hwnas.cells.grow import grow_genotype, grow_indices
from hwnas.cells.losses import ablation_loss, marginal_contributions, zero_one_loss
from hwnas.cells.select import select_genotype, select_threshold
from hwnas.errors import ConfigError
from hwnas.strategies.base import SearchProblem, StepContext
from hwnas.strategies.darts import CellStrategy, DartsParams

Parsing = Literal["sparse", "darts"]


@dataclass(frozen=True)
class DDartsParams(DartsParams):
    """D-DARTS' loss weights and parsing (thesis Sec. 4.2.1: w_01 = 8, w_AB = 0.5, threshold 0.85)."""

    w01: float = 8.0  # weight of the zero-one loss (thesis: 8 in Sec. 4.2.1, 7 in Sec. 4.2.2)
    w_ab: float = 0.5  # weight of the ablation loss L_AB (0: FairDARTS' L_F per cell)
    parsing: Parsing = "sparse"  # 'sparse' (edges whose best σ(α) >= threshold) or 'darts' (best edges per node)
    threshold: float = 0.85  # σ_t of the sparse parsing
    search_layers: int | None = None  # searched cells (None: 8 as in the thesis, or the space's where Algorithm 2
    #                                   cannot grow to it; 0: the space's); fewer than the space's are grown
    init_arch: str = ""  # DARTOpti: a genotype (or cells:... string) whose operations start at +init_value
    init_value: float = 3.0  # |α| of the handcrafted architecture's encoding


class DDartsStrategy(CellStrategy):
    """Per-cell architecture weights and losses."""

    name = "ddarts"
    Params = DDartsParams
    per_cell = True
    default_search_layers = 8  # thesis Sec. 4.2.1

    def default_layers(self) -> int:
        """8 searched cells, or the space's own count where Algorithm 2 cannot grow to it: a topology without
        reduction cells at 1/3 and 2/3 (NAS-Bench-201), or a space of at most 8 cells."""
        if self.space.topology != "darts" or self.space.layers <= self.default_search_layers:
            return self.space.layers
        return self.default_search_layers

    @classmethod
    def check_params(cls, p: DDartsParams) -> None:
        super().check_params(p)
        if p.order != 1:
            raise ConfigError(f"strategy 'ddarts': order {p.order}: D-DARTS is first order")

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        if self.space.topology != "darts" and self.search_space.layers != self.space.layers:
            raise ConfigError(f"strategy 'ddarts': Algorithm 2 grows networks whose reduction cells sit at 1/3 and "
                              f"2/3; space '{self.space.name}' has none, so search_layers must be {self.space.layers}")
        self.grown = grow_indices(self.search_space.layers, self.space.layers)
        if p.init_arch:
            self.encode(p.init_arch)

    def encode(self, text: str) -> None:
        """DARTOpti (i): a handcrafted genotype deserialised into α: +v for its operations, −v elsewhere."""
        genotype = Genotype.parse(text.split(":", 4)[4] if text.startswith("cells:") else text)
        self.search_space.check(genotype)
        with torch.no_grad():
            for group, alpha in self.alphas.items():
                alpha.fill_(-self.params.init_value)
                for node, op, source in genotype[group].edges():
                    e = self.search_space.edge_index(node, source)
                    alpha[e, self.search_space.primitives.index(op)] = self.params.init_value

    def arch_weights_of(self, alpha: torch.Tensor, phase: str) -> torch.Tensor:
        del phase
        return torch.sigmoid(alpha)

    # -- the per-cell losses (Algorithm 1) ----------------------------------------------------------------
    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        """∂L_T^i/∂α_i for every cell i from two backward passes: L_CE and Σ_j L_CE^(C \\ {C_j}); the ablation
        term's gradient follows from M_C^i = L − L_{−i} (L_{−i} does not depend on α_i) and
        mean(M_C) = L − mean_j L_{−j} by the quotient rule."""
        del ctx
        p, groups = self.params, list(self.alphas)
        alphas = [self.alphas[g] for g in groups]
        weights, x = self.relaxed("arch"), self.proxy_input(x)
        full = F.cross_entropy(self.supernet(x, weights), y)
        n = len(groups)
        ablated = [F.cross_entropy(self.supernet(x, weights, active=[j != i for j in range(n)]), y)
                   for i in range(n)] if p.w_ab else []
        g_full = torch.autograd.grad(full, alphas, retain_graph=bool(ablated))
        regular = self.regularizer(weights)
        g_regular = torch.autograd.grad(regular, alphas, allow_unused=True, retain_graph=bool(ablated))
        ab_terms = [torch.zeros(()) for _ in groups]
        if ablated:
            g_abl = torch.autograd.grad(torch.stack(ablated).sum(), alphas, allow_unused=True)
            contributions = marginal_contributions(full.detach(), [a.detach() for a in ablated])
            ab_terms = list(ablation_loss(contributions))
            mean = contributions.mean()
        for i, alpha in enumerate(alphas):
            grad = g_full[i] + (g_regular[i] if g_regular[i] is not None else 0.0)
            if ablated and float(mean) != 0.0:
                d_m = g_full[i] - (g_abl[i] if g_abl[i] is not None else 0.0) / n
                grad = grad + p.w_ab * (g_full[i] * mean - contributions[i] * d_m) / mean ** 2
            alpha.grad = grad.detach()
        with torch.no_grad():
            self.strength.add(dict(zip(groups, g_full)), {g: w.detach() for g, w in weights.items()})
        loss = float(full.detach())
        self.last_metrics = {"arch_loss": loss + float(regular.detach()) + p.w_ab * float(
            torch.stack([torch.as_tensor(t) for t in ab_terms]).mean()), "arch_ce": loss}
        return dict(self.last_metrics)

    def regularizer(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Latency hinge plus w_01 · Σ_i L_01^i (each cell's zero-one loss over its own α, Eq. 4.5)."""
        zero_one = sum(zero_one_loss([alpha]) for alpha in self.alphas.values())
        return super().regularizer(weights) + self.params.w01 * zero_one

    # -- derivation ---------------------------------------------------------------------------------------
    def select(self, scores: Mapping[str, torch.Tensor], criterion: str) -> Genotype:
        if self.params.parsing == "sparse" and criterion == "magnitude":
            return select_threshold(self.search_space, scores, self.params.threshold)
        return select_genotype(self.search_space, scores)

    def deployed_genotype(self, genotype: Genotype) -> Genotype:
        return grow_genotype(genotype, self.space.layers)

    def deployed_scores(self, scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"c{i}": scores[f"c{c}"] for i, c in enumerate(self.grown)}

    def deployed_weights(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return self.deployed_scores(weights)
