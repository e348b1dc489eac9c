"""DARTS (Liu et al., ICLR 2019; thesis Sec. 2.7): softmax-relaxed cell edges, architecture weights α trained by
Adam on a split disjoint from the weights' (bilevel, Eq. 2.8), first order (ξ = 0) or second order (the unrolled
step with the finite-difference Hessian-vector product, Eqs. 7-8, `hwnas.cells.unrolled`).

`CellStrategy` is what the DARTS family shares: the cell supernet (a smaller proxy network by default, as DARTS
searches 8 cells and deploys 20), α per cell group, the latency hinge against the budget on the deployed
network's expected latency (`hwnas.cells.latency`), selection by magnitude or by operation strength (`--select
magnitude|ostr`, `hwnas.strategies.ostr`), the per-epoch diagnostics and the budget repair at derivation.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hwnas.budget.projection import ARGMAX
from hwnas.cells.diagnostics import CellDiagnostics
from hwnas.cells.genotype import Genotype
from hwnas.cells.latency import CellCost, latency_penalty
from hwnas.cells.select import fit_to_budget, select_genotype
from hwnas.cells.space import CellSpace
from hwnas.cells.supernet import CellSupernet
from hwnas.cells.unrolled import sgd_settings, unrolled_arch_grads
from hwnas.strategies.base import BaseStrategy, Derivation, SearchProblem, StepContext, StepOutput
from hwnas.strategies.ostr import CellSelect, OperationStrength, SelectionStability


@dataclass(frozen=True)
class DartsParams:
    """DARTS hyperparameters (paper values unless said otherwise) and what every cell strategy shares."""

    order: Literal[1, 2] = 1  # 1: first-order DARTS; 2: second-order (unrolled virtual step, finite-difference HVP)
    arch_lr: float = 3e-3  # Adam learning rate of α (paper: 3e-4 over ~19,500 steps; searches here take 20-30x
    #                        fewer, and at 3e-4 the weights of a 20-epoch NB201 search on CIFAR-10 hardly moved)
    arch_beta1: float = 0.5  # Adam β1 (paper: 0.5; β2 = 0.999)
    arch_weight_decay: float = 1e-3  # L2 on α (paper: 1e-3)
    init_scale: float = 1e-3  # α initialised as init_scale · N(0, 1) (paper: 1e-3)
    unrolled_r: float = 0.01  # ε = r / ‖∇_w' L_val‖ of the finite-difference Hessian-vector product (paper: 0.01)
    select: CellSelect = "magnitude"  # derivation: 'magnitude' (largest weight) or 'ostr' (largest operation strength)
    ostr_star: bool = False  # OStr*: the strength without the p_o factor (OStr paper Sec. IV-D)
    ostr_window: Literal["epoch", "search"] = "epoch"  # strength averaged over this epoch's minibatches ('epoch') or
    # all ('search')
    early_stop: int = 0  # stop when the selected cells are unchanged for this many epochs (OStr K; 0: never)
    latency_estimate: Literal["derived", "expected"] = "derived"  # the latency the hinge holds in the band:
    # 'derived': the network derive() would pick now, with E[LAT]'s gradient (straight-through), so the search
    # keeps the network it ends with in the band; 'expected': E[LAT] under the weights (the papers'), which for
    # weights that are still flat lies far from the derived network's latency
    latency_weight: float = 1.0  # λ of the band hinge λ · (max(0, L/T − 1) + max(0, floor − L/T)) on the
    #                              architecture loss (L: latency_estimate; floor: the search's budget_floor)
    search_channels: int = 4  # C of the proxy supernet (0: the space's); the space's network is what deploys
    search_layers: int | None = None  # cells of the proxy supernet (None: 5, or the nearest count the space's
    #                                   topology allows: 6 on nb201; 0: the space's)
    search_resolution: int = 16  # input side of the proxy (images average-pooled down; 0: the data's)


class CellStrategy(BaseStrategy):
    """The shared machinery of cell strategies; subclasses define `arch_weights_of` (the relaxation)."""

    space_kinds: ClassVar[tuple[str, ...]] = ("cell",)
    Params = DartsParams
    per_cell: ClassVar[bool] = False
    default_search_layers: ClassVar[int] = 5  # the proxy's cells when search_layers is not set

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, params)
        p = self.params
        self.space: CellSpace = problem.space.with_per_cell(self.per_cell)
        self.search_space = self._search_space()
        with torch.random.fork_rng():
            torch.manual_seed(problem.seed)
            self.supernet = CellSupernet(self.search_space)
        self.alphas = {group: (p.init_scale * torch.randn(len(self.space.edges), len(self.space.primitives),
                                                          generator=self.generator)).requires_grad_()
                       for group in self.search_space.groups}
        self.cost = CellCost.from_model(self.space, problem.latency)
        self.arch_optimizer = self.make_arch_optimizer(list(self.alphas.values()))
        self.strength = OperationStrength(star=p.ostr_star)
        self.stability = SelectionStability(p.early_stop)
        self.diagnostics = CellDiagnostics()
        self.last_metrics: dict[str, float] = {}

    def default_layers(self) -> int:
        """The proxy's cells when search_layers is not set: `default_search_layers`, or the nearest count the
        space's topology allows (a given search_layers is taken as it is, and refused where invalid)."""
        return self.space.nearest_layers(self.default_search_layers)

    def _search_space(self) -> CellSpace:
        p = self.params
        layers = self.default_layers() if p.search_layers is None else p.search_layers or None
        space = self.space.with_network(p.search_channels or None, layers)
        return space.with_resolution(min(p.search_resolution, space.resolution)) if p.search_resolution else space

    def make_arch_optimizer(self, alphas: list[torch.Tensor]) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.Adam(alphas, lr=p.arch_lr, betas=(p.arch_beta1, 0.999), weight_decay=p.arch_weight_decay)

    # -- the relaxation (what subclasses change) ----------------------------------------------------------
    def arch_weights_of(self, alpha: torch.Tensor, phase: str) -> torch.Tensor:
        """Edge weights from α; `phase` is 'weight', 'arch' or 'eval' (SP-DARTS draws temperatures per batch)."""
        del phase
        return F.softmax(alpha, dim=-1)

    def relaxed(self, phase: str) -> dict[str, torch.Tensor]:
        return {group: self.arch_weights_of(alpha, phase) for group, alpha in self.alphas.items()}

    def regularizer(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Architecture-only loss terms added to the task loss (FairDARTS adds its zero-one loss)."""
        return latency_penalty(self.latency_estimate(weights), self.problem.budget_ms,
                               self.params.latency_weight, self.problem.budget_floor)

    def latency_estimate(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """What the hinge holds in the band (`latency_estimate`): E[LAT], or the derived network's prediction
        carrying E[LAT]'s gradient."""
        expected = self.deployed_expected_ms(weights)
        if self.params.latency_estimate == "expected":
            return expected
        with torch.no_grad():
            derived = self.cost.of_genotype(self.current_genotype())
        return expected + (derived - expected.detach())

    def deployed_weights(self, weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Weights per group of the deployed space (the same groups unless a per-cell search grows)."""
        return dict(weights)

    def deployed_expected_ms(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.cost.expected_ms(self.deployed_weights(weights))

    # -- the trainer's face -------------------------------------------------------------------------------
    def arch_parameters(self) -> list[torch.Tensor]:
        return list(self.alphas.values())

    def proxy_input(self, x: torch.Tensor) -> torch.Tensor:
        """The batch at the proxy network's resolution (average-pooled; unchanged when it already matches)."""
        size = self.search_space.resolution
        return F.adaptive_avg_pool2d(x, size) if x.shape[-1] != size else x

    def network_loss(self, x: torch.Tensor, y: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self.supernet(self.proxy_input(x), weights), y)

    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput:
        weights = {g: w.detach() for g, w in self.relaxed("weight").items()}
        logits = self.supernet(self.proxy_input(x), weights)
        return StepOutput(F.cross_entropy(logits, y), logits)

    def task_arch_grads(self, x: torch.Tensor, y: torch.Tensor,
                        ctx: StepContext) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
        """(gradient to apply, task-loss gradient for the operation strength, task loss) w.r.t. α."""
        alphas = self.arch_parameters()
        if self.params.order == 2:
            optimizer = ctx.weight_optimizer
            momentum, decay = sgd_settings(optimizer)
            buffers = [optimizer.state.get(w, {}).get("momentum_buffer") for w in self.weight_parameters()]
            result = unrolled_arch_grads(lambda xb, yb: self.network_loss(xb, yb, self.relaxed("arch")),
                                         self.weight_parameters(), alphas, ctx.weight_batch, (x, y), ctx.weight_lr,
                                         momentum=momentum, weight_decay=decay, momentum_buffers=buffers,
                                         r=self.params.unrolled_r)
            return result.total, result.direct, result.val_loss
        loss = self.network_loss(x, y, self.relaxed("arch"))
        grads = torch.autograd.grad(loss, alphas, allow_unused=True)
        grads = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, grads)]
        return grads, grads, float(loss.detach())

    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]:
        total, task, loss = self.task_arch_grads(x, y, ctx)
        alphas = self.arch_parameters()
        regular = self.regularizer(self.relaxed("arch"))
        extra = (torch.autograd.grad(regular, alphas, allow_unused=True) if regular.requires_grad
                 else [None] * len(alphas))
        for alpha, g, r in zip(alphas, total, extra):
            alpha.grad = (g if r is None else g + r).detach()
        with torch.no_grad():
            self.strength.add(dict(zip(self.alphas, task)), {g: w.detach() for g, w in self.relaxed("arch").items()})
        self.last_metrics = {"arch_loss": loss + float(regular.detach()), "arch_ce": loss}
        return dict(self.last_metrics)

    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None:
        super().start_epoch(epoch, epochs, warmup)
        if self.params.ostr_window == "epoch" and not warmup:
            self.strength.reset()

    @torch.no_grad()
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(self.proxy_input(x), self.relaxed("eval"))

    @torch.no_grad()
    def selection_weights(self) -> dict[str, torch.Tensor]:
        """The weights magnitude selection ranks (and the latency of `expected_latency_ms`)."""
        return {g: w.detach() for g, w in self.relaxed("eval").items()}

    @torch.no_grad()
    def expected_latency_ms(self) -> float:
        return float(self.deployed_expected_ms(self.selection_weights()))

    # -- selection and derivation -------------------------------------------------------------------------
    def selection_scores(self) -> tuple[dict[str, torch.Tensor], str]:
        """Scores per group and which criterion produced them (OStr falls back to magnitude before any step)."""
        if self.params.select == "ostr" and self.strength.count:
            return self.strength.strength(), "ostr"
        return self.selection_weights(), "magnitude"

    def select(self, scores: Mapping[str, torch.Tensor], criterion: str) -> Genotype:
        del criterion
        return select_genotype(self.search_space, scores)

    def deployed_genotype(self, genotype: Genotype) -> Genotype:
        return genotype

    def deployed_scores(self, scores: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(scores)

    def current_genotype(self) -> Genotype:
        return self.deployed_genotype(self.select(*self.selection_scores()))

    def status(self) -> dict[str, float]:
        """Per epoch: skip connections of the selected cells (and of both criteria, as OStr compares them on one
        supernet), architecture-weight entropy, whether the early stop fired."""
        weights = self.selection_weights()
        both = {"magnitude": self.deployed_genotype(self.select(weights, "magnitude"))}
        if self.strength.count:
            both["ostr"] = self.deployed_genotype(self.select(self.strength.strength(), "ostr"))
        criterion = "ostr" if (self.params.select == "ostr" and "ostr" in both) else "magnitude"
        genotype = both[criterion]
        stop = self.stability.update(self.epoch, genotype.to_string()) if not self.warmup else False
        row = self.diagnostics.record(self.epoch, genotype, weights, criterion, both)
        return {**row, "early_stop": float(stop)}

    def write_plots(self, folder) -> None:
        """cells.csv and cells.png in the run directory (`hwnas.cells.diagnostics`)."""
        if self.diagnostics.records:
            self.diagnostics.write(folder)

    def should_stop(self) -> bool:
        """OStr's early stop: the selected architecture unchanged for `early_stop` epochs."""
        return self.stability.stopped

    def arch_weights(self) -> list[tuple[str, np.ndarray]]:
        rows = []
        for group, weights in self.selection_weights().items():
            for e, (node, source) in enumerate(self.space.edges):
                rows.append((f"{group} n{node}<-{source}", weights[e].numpy()))
        return rows

    def candidate_labels(self) -> list[list[str]]:
        return [list(self.space.primitives)] * (len(self.alphas) * len(self.space.edges))

    @torch.no_grad()
    def derive(self) -> Derivation:
        scores, criterion = self.selection_scores()
        genotype = self.current_genotype()
        argmax_ms = self.cost.of_genotype(genotype)
        budget = self.problem.budget_ms
        floor = self.problem.budget_floor * budget
        repaired, changes = fit_to_budget(self.space, genotype, self.deployed_scores(scores), self.cost, budget, floor)
        arch = self.space.arch(repaired)
        predicted = self.problem.latency.predict(arch)
        detail = {"genotype": repaired.to_string(), "select": criterion, "skip_connect": repaired.count(
            "skip_connect"), "search_network": f"c{self.search_space.channels}_l{self.search_space.layers}"}
        if changes:
            detail["repairs"] = changes
        method = ARGMAX.then("greedy") if changes else ARGMAX
        return Derivation(arch, predicted, argmax_ms, self.problem.budget_ms, method, detail)

    # -- resume -------------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {"strength": self.strength.state_dict(), "stability": self.stability.state_dict(),
                "diagnostics": self.diagnostics.state_dict()}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        if "strength" in state:
            self.strength.load_state_dict(state["strength"])
            self.stability.load_state_dict(state["stability"])
            self.diagnostics.load_state_dict(state["diagnostics"])


class DartsStrategy(CellStrategy):
    """DARTS: softmax over each edge's operations, α by Adam on the architecture split (first or second order)."""

    name = "darts"


class OStrDartsStrategy(CellStrategy):
    """OStr-DARTS (`ostr-darts.txt`, Sec. III-D): DARTS' supernet optimisation unchanged, selection by operation
    strength (`select=ostr` by default)."""

    name = "ostr"

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        super().__init__(problem, {"select": "ostr", **dict(params)})
