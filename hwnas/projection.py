"""Budget repair: the most probable discrete architecture whose predicted latency meets the budget (and, with a
floor, uses at least that share of it).

For a chain space the problem is a multiple-choice knapsack: maximise Σ_l s_l[c_l] (s = log-probabilities of the
architecture distribution) subject to the predicted latency ≤ budget. When the argmax fits, it is the answer;
otherwise the LP relaxation (scipy `linprog`, dual simplex) has an optimal vertex with at most one fractional layer
(there is a single knapsack row), which is rounded to its faster option; or a greedy pass trades the least score
per millisecond saved, then spends what slack is left on the best score gain per millisecond.
A floor ρ (e.g. 0.9) then fills an architecture predicted below ρ·budget: it upgrades, one layer at a time, the
option that loses the least score per millisecond gained while staying within the budget, or two layers at once
where no single upgrade fits (the budget buys accuracy; a search stopped early often leaves its argmax far below
it). The method says what happened:
'argmax', 'lp', 'greedy', with '+fill' (or 'fill') when the floor moved it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.errors import HwnasError
from hwnas.latency import ChainCost

METHODS = ("lp", "greedy")


@dataclass(frozen=True)
class Projection:
    """A discrete choice per position, its calibrated predicted latency, and how it was found."""

    choices: tuple[int, ...]
    predicted_ms: float
    argmax_ms: float  # the unconstrained argmax's predicted latency
    method: str  # 'argmax' when nothing needed repair, else 'lp' or 'greedy'

    @property
    def repaired(self) -> bool:
        return self.method != "argmax"


def block_sum_floor(cost: ChainCost, budget_ms: float, floor: float) -> float:
    return (floor * budget_ms - cost.offset_ms) / cost.scale - cost.fixed_ms


def fill_to_floor(scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: Sequence[int], low: float,
                  high: float) -> list[int]:
    """Raise Σ lat[c] to at least `low` (never above `high`), each step the upgrade losing the least score per
    millisecond gained; where no single upgrade fits under `high`, two layers change at once (one may slow down
    and the other speed up), since coarse latencies can step over the band one layer at a time."""
    choices = list(choices)
    used = sum(t[c] for t, c in zip(lat, choices))
    while used < low:
        move = _fill_move(scores, lat, choices, high - used)
        if move is None:
            break
        for layer, option in move:
            used += lat[layer][option] - lat[layer][choices[layer]]
            choices[layer] = option
    return choices


def _fill_move(scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: list[int],
               room: float) -> list[tuple[int, int]] | None:
    """The (layer, option) changes that add latency within `room` at the least score lost per ms: one layer's
    slower option where one fits, else two layers' options together; None where neither fits."""
    layers, options, extra, loss = [], [], [], []
    for layer, (s, t) in enumerate(zip(scores, lat)):
        current = choices[layer]
        for option in range(len(t)):
            if option != current and s[option] >= -1e8:
                layers.append(layer)
                options.append(option)
                extra.append(t[option] - t[current])
                loss.append(s[current] - s[option])
    if not layers:
        return None
    layers, extra, loss = np.array(layers), np.array(extra), np.array(loss)
    single = (extra > 0) & (extra <= room)
    if single.any():
        i = int(np.argmin(np.where(single, loss / np.where(single, extra, 1.0), np.inf)))
        return [(int(layers[i]), options[i])]
    gained = extra[:, None] + extra[None, :]
    pair = (layers[:, None] < layers[None, :]) & (gained > 0) & (gained <= room)
    if not pair.any():
        return None
    rate = np.where(pair, (loss[:, None] + loss[None, :]) / np.where(pair, gained, 1.0), np.inf)
    i, j = np.unravel_index(int(np.argmin(rate)), rate.shape)
    return [(int(layers[i]), options[i]), (int(layers[j]), options[j])]


def block_sum_budget(cost: ChainCost, budget_ms: float) -> float:
    """The budget on Σ_l t_l[c_l] (uncalibrated, without stem and head), with a relative margin of 1e-9."""
    return ((budget_ms - cost.offset_ms) / cost.scale - cost.fixed_ms) * (1 - 1e-9)


def _arrays(cost: ChainCost) -> list[np.ndarray]:
    return [c.detach().cpu().numpy().astype(float) for c in cost.candidates_ms]


def _lp(scores: list[np.ndarray], lat: list[np.ndarray], limit: float) -> list[int] | None:
    from scipy.optimize import linprog

    sizes = [len(s) for s in scores]
    offsets = np.cumsum([0, *sizes])
    n = int(offsets[-1])
    c = -np.concatenate(scores)
    a_eq = np.zeros((len(sizes), n))
    for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        a_eq[row, start:stop] = 1.0
    result = linprog(c, A_ub=np.concatenate(lat)[None, :], b_ub=[limit], A_eq=a_eq, b_eq=np.ones(len(sizes)),
                     bounds=(0, 1), method="highs-ds")
    if result.status != 0:
        return None
    choices = []
    for start, stop, times in zip(offsets[:-1], offsets[1:], lat):
        x = result.x[start:stop]
        support = np.flatnonzero(x > 1e-9)
        # a fractional layer takes its fastest option in the support, which keeps the latency within the LP's
        choices.append(int(support[np.argmin(times[support])]) if len(support) > 1 else int(np.argmax(x)))
    return choices


def _greedy(scores: list[np.ndarray], lat: list[np.ndarray], limit: float, start: list[int]) -> list[int]:
    choices = list(start)
    used = sum(t[c] for t, c in zip(lat, choices))
    while used > limit:
        best = None
        for layer, (s, t) in enumerate(zip(scores, lat)):
            current = choices[layer]
            for option in np.flatnonzero(t < t[current]):
                ratio = (s[current] - s[option]) / (t[current] - t[option])
                if best is None or ratio < best[0]:
                    best = (ratio, layer, int(option))
        if best is None:
            break
        _, layer, option = best
        used += lat[layer][option] - lat[layer][choices[layer]]
        choices[layer] = option
    while True:  # spend the slack: best score gain per millisecond that still fits
        best = None
        for layer, (s, t) in enumerate(zip(scores, lat)):
            current = choices[layer]
            for option in np.flatnonzero(s > s[current]):
                extra = t[option] - t[current]
                if used + extra > limit:
                    continue
                gain = (s[option] - s[current]) / max(extra, 1e-12)
                if best is None or gain > best[0]:
                    best = (gain, layer, int(option))
        if best is None:
            return choices
        _, layer, option = best
        used += lat[layer][option] - lat[layer][choices[layer]]
        choices[layer] = option


def project_chain(scores: Sequence[np.ndarray], cost: ChainCost, budget_ms: float, method: str = "lp",
                  allowed: Sequence[np.ndarray] | None = None, floor: float = 0.0) -> Projection:
    """The highest-scoring choices whose predicted latency ≤ `budget_ms` (and ≥ floor · budget when reachable);
    `allowed` masks out candidates."""
    projection = _project(scores, cost, budget_ms, method, allowed)
    if floor <= 0 or projection.predicted_ms >= floor * budget_ms:
        return projection
    lat = _arrays(cost)
    masked = _masked(scores, allowed, len(lat))
    choices = fill_to_floor(masked, lat, projection.choices, block_sum_floor(cost, budget_ms, floor),
                            block_sum_budget(cost, budget_ms))
    label = "fill" if projection.method == "argmax" else projection.method + "+fill"
    return Projection(tuple(choices), cost.of_choices(choices), projection.argmax_ms, label)


def _masked(scores: Sequence[np.ndarray], allowed: Sequence[np.ndarray] | None, n: int) -> list[np.ndarray]:
    return [np.where(a, np.asarray(s, dtype=float), -1e9) if allowed is not None else np.asarray(s, dtype=float)
            for s, a in zip(scores, allowed if allowed is not None else [None] * n)]


def _project(scores: Sequence[np.ndarray], cost: ChainCost, budget_ms: float, method: str,
             allowed: Sequence[np.ndarray] | None) -> Projection:
    if method not in METHODS:
        raise HwnasError(f"projection method '{method}': expected one of {', '.join(METHODS)}")
    lat = _arrays(cost)
    scores = _masked(scores, allowed, len(lat))
    argmax = [int(np.argmax(s)) for s in scores]
    argmax_ms = cost.of_choices(argmax)
    if argmax_ms <= budget_ms:
        return Projection(tuple(argmax), argmax_ms, argmax_ms, "argmax")
    low, _ = cost.range_ms
    if budget_ms < low:
        raise HwnasError(f"budget {budget_ms:.4g} ms is below the fastest architecture ({low:.4g} ms)")
    limit = block_sum_budget(cost, budget_ms)
    choices = _lp(scores, lat, limit) if method == "lp" else None
    used = method if choices is not None else "greedy"
    if choices is None or sum(t[c] for t, c in zip(lat, choices)) > limit:
        choices, used = _greedy(scores, lat, limit, argmax), "greedy"
    return Projection(tuple(choices), cost.of_choices(choices), argmax_ms, used)
