"""Differentiable latency from a device's LUT, exactly as each method defines it, and the latency loss terms.

Every expression is the LUT's block latencies (milliseconds per image) combined by architecture weights, then the
table's calibration (scale · Σ + offset); calibration is affine, so expectations pass through it unchanged.
Each expectation equals the Monte-Carlo mean of `LatencyModel.predict` over architectures sampled from the same
distribution (tests/test_latency_expected.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from hwnas.errors import HwnasError
from hwnas.lut.model import Calibration, LatencyModel
from hwnas.spaces.chain import Space
from hwnas.spaces.dense import DenseSpace


# -- chain spaces (FBNet, ProxylessNAS, HardCoRe-NAS) ---------------------------------------------------------
@dataclass(frozen=True)
class ChainCost:
    """A chain space's LUT as tensors: predict(choices) = calibration(fixed + Σ_l t_l[c_l])."""

    fixed_ms: float
    candidates_ms: tuple[torch.Tensor, ...]
    calibration: Calibration = Calibration()

    def calibrate(self, block_sum: torch.Tensor | float) -> torch.Tensor | float:
        return self.calibration.apply(block_sum)

    def of_choices(self, choices: Sequence[int]) -> float:
        return float(self.calibrate(self.fixed_ms + sum(float(c[i]) for c, i in zip(self.candidates_ms, choices))))

    @property
    def range_ms(self) -> tuple[float, float]:
        low = self.fixed_ms + sum(float(c.min()) for c in self.candidates_ms)
        high = self.fixed_ms + sum(float(c.max()) for c in self.candidates_ms)
        return float(self.calibrate(low)), float(self.calibrate(high))


def _weighted_sum(weights: Sequence[torch.Tensor], cost: ChainCost) -> torch.Tensor:
    total = sum((w.to(torch.float64) * t).sum(-1) for w, t in zip(weights, cost.candidates_ms))
    return cost.calibrate(cost.fixed_ms + total)


def fbnet_latency(masks: Sequence[torch.Tensor], cost: ChainCost) -> torch.Tensor:
    """FBNet (Wu et al. 2019, Eq. 6; thesis Eq. 3.34-3.35): LAT(a) = Σ_l Σ_i m_{l,i} · LAT(b_{l,i}), with m the
    (Gumbel-softmax relaxed) masks of the sampled architecture; with probabilities it is the expectation."""
    return _weighted_sum(masks, cost)


def proxyless_expected_latency(probs: Sequence[torch.Tensor], cost: ChainCost) -> torch.Tensor:
    """ProxylessNAS (Cai et al. 2019, Eq. 5): E[LAT] = Σ_i E[latency_i] = Σ_i Σ_j p^i_j · F(o^i_j), p^i the
    softmax of layer i's path parameters and F the LUT."""
    return _weighted_sum(probs, cost)


@dataclass(frozen=True)
class DepthStage:
    """A depth-searched stage of a chain space: its positions in order and the smallest admissible depth."""

    positions: tuple[int, ...]
    min_depth: int

    @property
    def depths(self) -> tuple[int, ...]:
        return tuple(range(self.min_depth, len(self.positions) + 1))


def depth_stages(space: Space) -> dict[int, DepthStage]:
    """The stages of `space` whose depth is searched (stage index -> DepthStage)."""
    result = {}
    for stage_index, (stage, positions) in enumerate(zip(space.stages, space.by_stage())):
        if stage.min_layers is not None and stage.min_layers < stage.layers:
            result[stage_index] = DepthStage(tuple(p.index for p in positions), stage.min_layers)
    return result


def block_presence(beta: torch.Tensor, stage: DepthStage) -> torch.Tensor:
    """P_b = Σ_{b' ≥ b} β_{b'}: the probability that block b (1-based) of the stage runs, for every block."""
    presence = []
    for block in range(1, len(stage.positions) + 1):
        mask = torch.tensor([1.0 if depth >= block else 0.0 for depth in stage.depths], dtype=beta.dtype)
        presence.append((beta * mask).sum())
    return torch.stack(presence)


def hardcore_expected_latency(alpha: Sequence[torch.Tensor], beta: Mapping[int, torch.Tensor],
                              stages: Mapping[int, DepthStage], skip_index: Sequence[int | None],
                              cost: ChainCost) -> torch.Tensor:
    """HardCoRe-NAS (Nayman et al. 2021, Eq. 5; thesis Eq. 3.41):
    LAT(α, β) = Σ_s Σ_{b'} β^s_{b'} Σ_{b ≤ b'} Σ_c α^s_{b,c} · t^s_{b,c}, i.e. block b runs with probability
    P_b = Σ_{b' ≥ b} β^s_{b'}. α rows are probabilities over each position's candidates (the skip entry unused at
    depth-searched positions); an absent block costs the LUT's identity (skip) row, which Eq. 3.41 takes as zero.
    Bilinear: linear in α for fixed β and in β for fixed α (what the Frank-Wolfe linear programs use).
    """
    presence: dict[int, torch.Tensor] = {}
    for stage_index, stage in stages.items():
        p = block_presence(beta[stage_index].to(torch.float64), stage)
        presence.update({position: p[b] for b, position in enumerate(stage.positions)})
    total = torch.zeros((), dtype=torch.float64)
    for position, (a, t) in enumerate(zip(alpha, cost.candidates_ms)):
        block = (a.to(torch.float64) * t).sum()
        if position in presence:
            p = presence[position]
            skip = t[skip_index[position]] if skip_index[position] is not None else 0.0  # mandatory: p == 1
            total = total + p * block + (1 - p) * skip
        else:
            total = total + block
    return cost.calibrate(cost.fixed_ms + total)


# -- dense spaces (DenseNAS) ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DenseCost:
    """A dense space's LUT as tensors: per edge its alignment candidates, per routing block its basic-layer
    candidates (all layers of a block share a shape), and the fixed stem + classifier."""

    fixed_ms: float
    edge_ms: tuple[torch.Tensor, ...]
    layer_ms: tuple[torch.Tensor, ...]  # per routing block (node 1..N)
    edges: tuple[tuple[int, int], ...]
    layers: tuple[int, ...]  # basic layers per routing block
    num_nodes: int
    calibration: Calibration = Calibration()

    def calibrate(self, block_sum: torch.Tensor | float) -> torch.Tensor | float:
        return self.calibration.apply(block_sum)

    def _extreme_path(self, pick: Any) -> float:
        """Shortest (pick=min) or longest (max) path by dynamic programming over the routing DAG."""
        best = {0: 0.0}
        for node in range(1, self.num_nodes):
            inner = 0.0
            if node < self.num_nodes - 1:
                inner = pick(self.layer_ms[node - 1].tolist()) * self.layers[node - 1]
            arrivals = [best[src] + pick(self.edge_ms[e].tolist()) for e, (src, dst) in enumerate(self.edges)
                        if dst == node and src in best]
            if arrivals:
                best[node] = pick(arrivals) + inner
        return float(self.calibrate(self.fixed_ms + best[self.num_nodes - 1]))

    @property
    def range_ms(self) -> tuple[float, float]:
        return self._extreme_path(min), self._extreme_path(max)


def densenas_chained_cost(edge_probs: Sequence[torch.Tensor], edge_op_weights: Sequence[torch.Tensor],
                          layer_op_weights: Sequence[Sequence[torch.Tensor]], cost: DenseCost) -> torch.Tensor:
    """DenseNAS (Fang et al. 2020, Eqs. 4-5; thesis Eqs. 3.42-3.43), chained from the last block back:
    cost^l = Σ_o w^l_o · cost^l_o per basic or alignment layer, and
    c̃ost^i = cost^i_b + Σ_{j=i+1}^{i+m} p_{ij} · (cost^{ij}_align + c̃ost^j), returning the calibrated
    fixed + c̃ost^0 (the thesis prints cost^j_b inside the sum; the paper and its code chain c̃ost^j, which makes
    c̃ost^0 the whole network's expected cost under the routing distribution).
    `edge_probs[e]` is p_{ij} of edge e (a 0-dim tensor), `edge_op_weights[e]` its alignment op weights,
    `layer_op_weights[n-1][l]` the op weights of basic layer l of routing block n.
    """
    chained: dict[int, torch.Tensor] = {cost.num_nodes - 1: torch.zeros((), dtype=torch.float64)}
    for node in range(cost.num_nodes - 2, -1, -1):
        own = torch.zeros((), dtype=torch.float64)
        if node > 0:
            for weights in layer_op_weights[node - 1]:
                own = own + (weights.to(torch.float64) * cost.layer_ms[node - 1]).sum()
        onward = torch.zeros((), dtype=torch.float64)
        for e, (src, dst) in enumerate(cost.edges):
            if src == node:
                align = (edge_op_weights[e].to(torch.float64) * cost.edge_ms[e]).sum()
                onward = onward + edge_probs[e].to(torch.float64) * (align + chained[dst])
        chained[node] = own + onward
    return cost.calibrate(cost.fixed_ms + chained[0])


def block_tensor(model: LatencyModel, specs) -> torch.Tensor:
    """The blocks' LUT latencies (ms, uncalibrated) as the float64 tensor every cost is built from."""
    return torch.as_tensor(model.block_ms(specs), dtype=torch.float64)


def dense_cost(space: DenseSpace, model: LatencyModel) -> DenseCost:
    """Arrays of `space`'s LUT rows (all must be measured) for the chained cost."""
    model.require_blocks(space.specs())
    lat = partial(block_tensor, model)
    stem, head = space.fixed_specs()
    return DenseCost(float(lat([*stem, *head]).sum()), tuple(lat(e.candidates) for e in space.edges),
                     tuple(lat(specs) for specs in space.layer_specs),
                     tuple((e.src, e.dst) for e in space.edges), tuple(b.layers for b in space.blocks),
                     space.num_nodes, model.calibration_for(space.resolution))


def chain_cost(space: Space, model: LatencyModel) -> ChainCost:
    """Arrays of `space`'s LUT rows (all must be measured): the fixed stem and head, each position's candidates."""
    model.require_blocks(space.specs())
    stem, head = space.fixed_specs()
    return ChainCost(float(model.block_ms([*stem, *head]).sum()),
                     tuple(block_tensor(model, position.specs) for position in space.positions),
                     model.calibration_for(space.resolution))


def space_range_ms(space: Any, model: LatencyModel) -> tuple[float, float]:
    """Fastest and slowest architecture of any space kind (a space may define `latency_range_ms(model)`); a range
    that is not positive and finite (a damaged calibration) is one line, not a search toward a negative budget."""
    if hasattr(space, "latency_range_ms"):
        low, high = space.latency_range_ms(model)
    elif isinstance(space, DenseSpace):
        low, high = dense_cost(space, model).range_ms
    else:
        low, high = chain_cost(space, model).range_ms
    if not (0 < low <= high < math.inf):
        raise HwnasError(f"{model.table.path}: predicted latencies of space {space.name} span {low:.4g}..{high:.4g} "
                         f"ms at {space.resolution} px; its calibration there makes them non-positive: refit it with "
                         "`hwnas lut calibrate`")
    return low, high


# -- loss terms -----------------------------------------------------------------------------------------------
def fbnet_loss(ce: torch.Tensor, lat: torch.Tensor, *, alpha: float = 0.2, beta: float = 0.6) -> torch.Tensor:
    """FBNet (Wu et al. 2019, Eq. 2; thesis Eq. 3.34): L = CE · α · log(LAT)^β, paper defaults α=0.2, β=0.6.
    `lat` must exceed 1 in its unit so that log(LAT) > 0."""
    return ce * alpha * torch.log(lat) ** beta


def proxyless_loss(ce: torch.Tensor, expected_lat: torch.Tensor, *, lam: float) -> torch.Tensor:
    """ProxylessNAS (Cai et al. 2019, Eq. 6): L = CE + λ · E[LAT] (the weight-decay term is the optimizer's)."""
    return ce + lam * expected_lat


def densenas_loss(ce: torch.Tensor, cost: torch.Tensor, *, lam: float, tau: float) -> torch.Tensor:
    """DenseNAS (Fang et al. 2020, Eq. 6; thesis Eq. 3.44): L = CE + λ · log_τ(c̃ost^0)."""
    return ce + lam * torch.log(cost) / math.log(tau)
