"""Discretisation: from per-edge operation scores (architecture weights, or OStr strengths) to a `Genotype`.

DARTS (Liu et al. 2019, Sec. 2.4): on each edge the best operation other than `none`; each node keeps the
`keep` incoming edges whose best score is highest. NAS-Bench-201 keeps every edge and may pick `none`.
D-DARTS' sparse parsing (thesis Sec. 4.2.1, Algorithm 1 end): an edge is kept when its best sigmoid weight
reaches the threshold σ_t.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from hwnas.cells.genotype import CellGenotype, Genotype
from hwnas.cells.space import CellSpace


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
    """Bring the genotype's predicted latency into [floor, budget] by swapping the operation of one kept edge at a
    time: while over the budget, the cheaper swap that loses the least score per millisecond saved; while under the
    floor, the dearer swap (staying within the budget) that loses the least score per millisecond added (the chain
    strategies' greedy repair and fill). Returns the genotype and the swaps made (empty when it already fits)."""
    nodes = {name: [list(node) for node in cell.nodes] for name, cell in genotype.cells}
    primitives, changes = space.primitives, []

    def current() -> Genotype:
        return Genotype(tuple((name, CellGenotype(tuple(tuple(n) for n in nodes[name]))) for name in genotype.names))

    def best_swap(over: bool, used: float):
        best = None
        for group in genotype.names:
            table, score = cost.group_ms[group], scores[group].detach().to(torch.float64)
            for node, edges in enumerate(nodes[group]):
                for k, (op, source) in enumerate(edges):
                    e, o = space.edge_index(node, source), primitives.index(op)
                    for o2, other in enumerate(primitives):
                        delta = float(table[e, o2] - table[e, o])  # ms added by the swap (block sum)
                        if (other == "none" and space.keep) or (delta >= 0 if over else delta <= 0):
                            continue
                        if not over and float(cost.calibrate(used + delta)) > budget_ms:
                            continue
                        ratio = float(score[e, o] - score[e, o2]) / abs(delta)
                        if best is None or ratio < best[0]:
                            best = (ratio, group, node, k, other, op, source, delta)
        return best

    used = cost.block_sum(current())
    while True:
        predicted = float(cost.calibrate(used))
        over = predicted > budget_ms
        if not over and predicted >= floor_ms:
            break
        swap = best_swap(over, used)
        if swap is None:
            break
        _, group, node, k, other, op, source, delta = swap
        nodes[group][node][k] = (other, source)
        used += delta
        changes.append(f"{group} node {node}: {op}~{source} -> {other}~{source}")
    return current(), changes
