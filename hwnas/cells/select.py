"""Discretisation: from per-edge operation scores (architecture weights, or OStr strengths) to a `Genotype`.

DARTS (Liu et al. 2019, Sec. 2.4): on each edge the best operation other than `none`; each node keeps the
`keep` incoming edges whose best score is highest. NAS-Bench-201 keeps every edge and may pick `none`.
D-DARTS' sparse parsing (thesis Sec. 4.2.1, Algorithm 1 end): an edge is kept when its best sigmoid weight
reaches the threshold σ_t.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hwnas.budget.knapsack import block_sum_at, block_sum_budget, fill_to_floor, repair
from hwnas.cells.genotype import CellGenotype, Genotype
from hwnas.cells.space import CellSpace
from hwnas.units import within_budget


def _best_ops(space: CellSpace, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best score and operation index per edge, `none` excluded where nodes keep a subset of their edges."""
    scores = scores.detach().to(torch.float64).clone()
    if space.keep and "none" in space.primitives:
        scores[:, space.primitives.index("none")] = float("-inf")
    return scores.max(-1)


def select_cell(space: CellSpace, scores: torch.Tensor) -> CellGenotype:
    """One cell from [edges, ops] scores: per node the `keep` best edges (all of them when keep is None)."""
    best, index = _best_ops(space, scores)
    nodes = []
    for node in range(space.nodes):
        edges = [e for e, (n, _) in enumerate(space.edges) if n == node]
        if space.keep:
            edges = sorted(sorted(edges, key=lambda e: -float(best[e]))[: space.keep])
        nodes.append(tuple((space.primitives[int(index[e])], space.edges[e][1]) for e in edges))
    return CellGenotype(tuple(nodes))


def select_genotype(space: CellSpace, scores: Mapping[str, torch.Tensor]) -> Genotype:
    """A genotype from per-group scores (magnitude selection with weights, OStr selection with strengths)."""
    return Genotype(tuple((group, select_cell(space, scores[group])) for group in space.groups))


def select_threshold(space: CellSpace, weights: Mapping[str, torch.Tensor], threshold: float) -> Genotype:
    """D-DARTS sparse parsing: keep an edge (with its best operation) when that weight is >= `threshold`; a node
    left with no edge keeps its best one, so every node stays connected."""
    cells = []
    for group in space.groups:
        best, index = _best_ops(space, weights[group])
        nodes = []
        for node in range(space.nodes):
            edges = [e for e, (n, _) in enumerate(space.edges) if n == node]
            kept = [e for e in edges if float(best[e]) >= threshold] or [max(edges, key=lambda e: float(best[e]))]
            nodes.append(tuple((space.primitives[int(index[e])], space.edges[e][1]) for e in kept))
        cells.append((group, CellGenotype(tuple(nodes))))
    return Genotype(tuple(cells))


def fit_to_budget(space: CellSpace, genotype: Genotype, scores: Mapping[str, torch.Tensor], cost,
                  budget_ms: float, floor_ms: float = 0.0) -> tuple[Genotype, list[str]]:
    """Bring the genotype's predicted latency into [floor, budget] with the chain strategies' greedy repair and
    fill (hwnas.budget.knapsack), one operation swap at a time: each kept edge is a position, its options the operations
    derivation may keep, each at its group's [edge, op] latency (`cost`: a CellCost). Returns the genotype and the
    edges whose operation changed (empty when it already fits, up to float rounding: a cell predicting exactly the
    budget is kept, as an NB201 cell with half its edges at the slowest operation and half at the fastest does
    under a 50% budget)."""
    predicted = cost.of_genotype(genotype)
    if within_budget(predicted, budget_ms) and within_budget(floor_ms, predicted):
        return genotype, []
    kept = [(group, node, op, source) for group, cell in genotype.cells
            for node, incoming in enumerate(cell.nodes) for op, source in incoming]
    rows = [(group, space.edge_index(node, source)) for group, node, _, source in kept]
    options = cost.selectable.numpy() > 0
    score = [scores[group].detach().to(torch.float64)[edge].numpy() for group, edge in rows]
    lat = [cost.group_ms[group][edge].numpy() for group, edge in rows]
    allowed = [options] * len(kept)
    start = [space.primitives.index(op) for _, _, op, _ in kept]
    limit = block_sum_budget(cost, budget_ms)
    low = block_sum_at(cost, floor_ms)
    choices = repair(score, lat, start, limit, allowed, low)
    # single swaps only, as the cell repair always made (a chain's fill also moves two layers at once)
    choices = fill_to_floor(score, lat, choices, low, limit, allowed, pairs=False)
    picked, cells = iter(choices), []
    for group, cell in genotype.cells:
        nodes = tuple(tuple((space.primitives[next(picked)], source) for _, source in incoming)
                      for incoming in cell.nodes)
        cells.append((group, CellGenotype(nodes)))
    changes = [f"{group} node {node}: {op}~{source} -> {space.primitives[c]}~{source}"
               for (group, node, op, source), c, was in zip(kept, choices, start) if c != was]
    return Genotype(tuple(cells)), changes
