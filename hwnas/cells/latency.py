"""Latency of cell networks from a device's LUT: the exact prediction of a genotype, the expected latency of a cell
under its architecture weights, and the feasible range of a space.

The expected latency is the weighted sum over edges, Σ_cells Σ_e c_e Σ_o q_{e,o} · t_{e,o}, calibrated like
`LatencyModel.predict`. It is the exact expectation of the discretised network's predicted latency when each
node keeps `keep` of its n incoming edges uniformly (edge weight c_e = keep / n; 1 where every edge is kept, as in
NAS-Bench-201) and each kept edge takes operation o with probability q_{e,o} = w_{e,o} / Σ w_e over the
operations derivation can pick (DARTS never keeps `none`). tests/test_cells_latency.py checks it against a
Monte-Carlo mean of `predict` over genotypes drawn that way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch

from hwnas.budget.costs import block_tensor
from hwnas.cells.genotype import Genotype
from hwnas.cells.space import CellSpace
from hwnas.lut.model import Calibration


@dataclass(frozen=True)
class CellCost:
    """A cell space's LUT as tensors: fixed blocks, and per parameter group the [edge, op] latencies summed over
    the network cells that share the group."""

    space: CellSpace
    fixed_ms: float
    group_ms: Mapping[str, torch.Tensor]  # group -> [edges, ops] float64
    calibration: Calibration = Calibration()

    @classmethod
    def from_model(cls, space: CellSpace, model) -> CellCost:
        """Arrays from a `LatencyModel`; every block of `space.specs()` must be in its table."""
        model.require_blocks(space.specs())
        lat = partial(block_tensor, model)
        fixed = float(lat(space.fixed_specs()).sum())
        groups: dict[str, torch.Tensor] = {}
        for slot in space.slots:
            table = torch.stack([lat(row) for row in space.candidate_specs(slot)])
            groups[slot.group] = groups.get(slot.group, 0) + table
        return cls(space, fixed, groups, model.calibration_for(space.resolution))

    def calibrate(self, block_sum: torch.Tensor | float) -> torch.Tensor | float:
        return self.calibration.apply(block_sum)

    @property
    def selectable(self) -> torch.Tensor:
        """1 for operations derivation may keep (all but `none` when nodes keep a subset of edges)."""
        mask = [0.0 if (p == "none" and self.space.keep) else 1.0 for p in self.space.primitives]
        return torch.tensor(mask, dtype=torch.float64)

    @property
    def edge_share(self) -> torch.Tensor:
        """c_e: the probability that a uniform choice of `keep` incoming edges keeps edge e."""
        space = self.space
        return torch.tensor([min(1.0, space.keep / (space.inputs + node)) if space.keep else 1.0
                             for node, _ in space.edges], dtype=torch.float64)

    def expected_ms(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Expected latency (ms) under architecture weights (one [edges, ops] tensor per group); differentiable."""
        share, mask = self.edge_share, self.selectable
        total = torch.zeros((), dtype=torch.float64)
        for group, table in self.group_ms.items():
            w = weights[group].to(torch.float64) * mask
            q = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
            total = total + (share[:, None] * q * table).sum()
        return self.calibrate(self.fixed_ms + total)

    def block_sum(self, genotype: Genotype) -> float:
        """Uncalibrated sum of a discrete genotype's blocks (ms)."""
        space, total = self.space, self.fixed_ms
        for group, table in self.group_ms.items():
            for node, op, source in genotype[group].edges():
                total += float(table[space.edge_index(node, source), space.primitives.index(op)])
        return total

    def of_genotype(self, genotype: Genotype) -> float:
        """The LUT prediction of a discrete genotype (equals `LatencyModel.predict(space.arch(genotype))`)."""
        return float(self.calibrate(self.block_sum(genotype)))

    def _extreme(self, pick_max: bool) -> float:
        space, total = self.space, self.fixed_ms
        blocked = float("-inf") if pick_max else float("inf")
        for table in self.group_ms.values():
            per_op = torch.where(self.selectable.bool(), table, torch.full_like(table, blocked))
            per_edge = per_op.max(-1).values if pick_max else per_op.min(-1).values
            for node in range(space.nodes):
                edges = [e for e, (n, _) in enumerate(space.edges) if n == node]
                values = sorted((float(per_edge[e]) for e in edges), reverse=pick_max)
                total += sum(values[: space.keep] if space.keep else values)
        return float(self.calibrate(total))

    @property
    def range_ms(self) -> tuple[float, float]:
        """Fastest and slowest discrete network of the space (exact: nodes and groups are independent)."""
        return self._extreme(False), self._extreme(True)


def latency_penalty(latency_ms: torch.Tensor, budget_ms: float, weight: float, floor: float = 0.0) -> torch.Tensor:
    """Band hinge for cell searches: weight · (max(0, L / T − 1) + max(0, floor − L / T)) of a latency estimate L
    (E[LAT], or the derived network's with E[LAT]'s gradient). Zero inside the band [floor · T, T], so the task loss
    alone selects among the networks there; below it the search itself moves toward the band, and the derivation's
    fill only closes what is left instead of choosing the network."""
    ratio = latency_ms / budget_ms
    return weight * (torch.relu(ratio - 1.0) + torch.relu(floor - ratio))


def space_range_ms(space: CellSpace, model) -> tuple[float, float]:
    """What `hwnas.budget.costs.space_range_ms` calls through `CellSpace.latency_range_ms`."""
    return CellCost.from_model(space, model).range_ms
