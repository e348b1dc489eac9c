"""D-DARTS' architecture distance metric M (thesis `ddarts-thesis.txt`, Sec. 4.1.5): weighted Hamming distance
between edges (Algorithm 3), Hausdorff distance between cells made symmetric (Eqs. 4.6-4.7), mean over the
cells at the same position (Eq. 4.8).

An edge is the binary vector over the space's operations (multi-hot when an edge carries several; `none` and an
absent edge are the zero vector). The thesis treats a cell as a set of edges; we make each point carry its edge
position (node, source) and set the distance between points at different positions to the largest edge
distance, 1. Without positions, two cells whose edges are permutations of each other would be at distance 0,
breaking the identity of indiscernibles the thesis claims for M; with them, M is a metric on genotypes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hwnas.cells.genotype import CellGenotype
from hwnas.cells.network import CellArch
from hwnas.cells.space import CellSpace
from hwnas.errors import ConfigError

# Thesis Table 4.1: benchmark score (top-1 %, CIFAR-10 proxy) of each DARTOpti operation, the Hamming weights.
# NAS-Bench-201's nor_conv (ReLU-conv-BN) is DARTOpti's simple_conv.
OPERATION_SCORES = {
    "conv_3x1_1x3": 82.76, "conv_7x1_1x7": 82.72, "max_pool_3x3": 82.96, "avg_pool_3x3": 82.51,
    "skip_connect": 82.15, "simple_conv_1x1": 82.27, "simple_conv_3x3": 83.12, "sep_conv_3x3": 83.19,
    "sep_conv_5x5": 84.87, "dil_conv_3x3": 82.96, "dil_conv_5x5": 82.99, "bottleneck_1x3x1": 83.06,
    "nor_conv_1x1": 82.27, "nor_conv_3x3": 83.12,
}
CROSS_POSITION = 1.0  # distance between edges at different positions: at least any same-position distance


def operation_weights(space: CellSpace, scores: Mapping[str, float] = OPERATION_SCORES) -> dict[str, float]:
    """Hamming weight per operation of `space` (score / 100, so each weight and every edge distance is <= 1)."""
    weights = {}
    for op in space.primitives:
        if op == "none":
            continue
        if op not in scores:
            raise ConfigError(f"no distance weight for operation '{op}' (thesis Table 4.1 covers "
                              f"{', '.join(sorted(scores))})")
        weights[op] = scores[op] / 100.0
    return weights


def hamming(u: Sequence[int], v: Sequence[int], weights: Sequence[float]) -> float:
    """Weighted Hamming distance (thesis Algorithm 3): mean over indices of w_i where u_i != v_i."""
    if len(u) != len(v) or len(u) != len(weights):
        raise ValueError("hamming: vectors and weights must have one length")
    return sum(w for a, b, w in zip(u, v, weights) if a != b) / len(u)


def edge_vectors(cell: CellGenotype, space: CellSpace, ops: Sequence[str]) -> dict[tuple[int, int], tuple[int, ...]]:
    """Binary op vector of every candidate edge position of the cell (zero where the edge is absent or `none`)."""
    present = {position: [0] * len(ops) for position in space.edges}
    for node, op, source in cell.edges():
        if op != "none":
            present[(node, source)][ops.index(op)] = 1
    return {position: tuple(vector) for position, vector in present.items()}


def directed_hausdorff(x: Mapping, y: Mapping, weights: Sequence[float]) -> float:
    """d_H(X, Y) = sup_{x in X} inf_{y in Y} d(x, y) (thesis Eq. 4.6, one direction), points keyed by position."""
    def point_distance(px, vx, py, vy) -> float:
        return hamming(vx, vy, weights) if px == py else CROSS_POSITION

    return max(min(point_distance(px, vx, py, vy) for py, vy in y.items()) for px, vx in x.items())


def cell_distance(a: CellGenotype, b: CellGenotype, space: CellSpace,
                  scores: Mapping[str, float] = OPERATION_SCORES) -> float:
    """M_H(X, Y) = max(d_H(X, Y), d_H(Y, X)) (thesis Eq. 4.7)."""
    weights_by_op = operation_weights(space, scores)
    ops = list(weights_by_op)
    weights = [weights_by_op[op] for op in ops]
    x, y = edge_vectors(a, space, ops), edge_vectors(b, space, ops)
    return max(directed_hausdorff(x, y, weights), directed_hausdorff(y, x, weights))


def architecture_distance(a: CellArch, b: CellArch, scores: Mapping[str, float] = OPERATION_SCORES) -> float:
    """M(A, B) = Σ_i M_H(C_i^A, C_i^B) / n over the n cells at the same positions (thesis Eq. 4.8)."""
    if a.space.name != b.space.name or a.space.primitives != b.space.primitives:
        raise ConfigError(f"cannot compare architectures of spaces '{a.space.name}' and '{b.space.name}'")
    if a.genotype.names != b.genotype.names:
        raise ConfigError(f"the architectures have different cells ({', '.join(a.genotype.names)} vs "
                          f"{', '.join(b.genotype.names)}); M compares cells position by position")
    names = a.genotype.names
    return sum(cell_distance(a.genotype[n], b.genotype[n], a.space, scores) for n in names) / len(names)


def cell_differences(a: CellArch, b: CellArch) -> list[dict]:
    """Per cell, the edges whose operations differ: what `hwnas diff` lists beside the distance."""
    rows = []
    for name in a.genotype.names:
        left, right = a.genotype[name], b.genotype[name]
        for node in range(a.space.nodes):
            ea, eb = sorted(left.nodes[node], key=lambda e: e[1]), sorted(right.nodes[node], key=lambda e: e[1])
            if ea != eb:
                rows.append({"cell": name, "node": node, "a": [f"{op}~{src}" for op, src in ea],
                             "b": [f"{op}~{src}" for op, src in eb]})
    return rows


def diff_report(a: CellArch, b: CellArch, scores: Mapping[str, float] = OPERATION_SCORES) -> dict:
    """What `hwnas diff` prints: M(A, B), M_H per cell, and the nodes whose edges differ."""
    names = a.genotype.names
    per_cell = {n: cell_distance(a.genotype[n], b.genotype[n], a.space, scores) for n in names}
    return {"distance": architecture_distance(a, b, scores), "cells": per_cell, "differences": cell_differences(a, b),
            "a": a.to_string(), "b": b.to_string()}
