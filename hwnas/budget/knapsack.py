"""The multiple-choice knapsack behind every budget repair: one option per position (a layer of a chain, a kept edge
of a cell), a score and a latency per option, the scores summed and the latencies held within one limit.

`solve_lp` is its relaxation over a product of simplices (scipy `linprog`, dual simplex); with a single knapsack
row an optimal vertex has at most one fractional position, which `round_to_choices` rounds to the cheapest option
of its support, keeping the latency within the LP's. `repair`, `spend_slack` and `fill_to_floor` are the greedy
alternative: single-position moves ranked by score per millisecond.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwnas.units import tight_limit

SUPPORT_ATOL = 1e-9  # an LP variable above this is in its vertex's support; the solver leaves noise below it at 0
MASKED_SCORE = -1e9  # the score of an option ruled out: finite, so the LP can still weigh it (as a last resort)


def masked_scores(scores: Sequence[np.ndarray], allowed: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
    """Scores as float arrays, MASKED_SCORE where `allowed` is False."""
    if allowed is None:
        return [np.asarray(s, dtype=float) for s in scores]
    return [np.where(a, np.asarray(s, dtype=float), MASKED_SCORE) for s, a in zip(scores, allowed)]


def solve_lp(objective: Sequence[np.ndarray], cost: Sequence[np.ndarray], limit: float,
             allowed: Sequence[np.ndarray] | None = None) -> list[np.ndarray] | None:
    """argmin Σ_g ⟨objective_g, x_g⟩ over x_g in the simplex of each group, subject to Σ_g ⟨cost_g, x_g⟩ ≤ limit;
    options outside `allowed` are held at 0. None where the solver reports no optimum."""
    from scipy.optimize import linprog

    if allowed is not None:
        objective = [o[m] for o, m in zip(objective, allowed)]
        cost = [c[m] for c, m in zip(cost, allowed)]
    sizes = [len(o) for o in objective]
    offsets = np.cumsum([0, *sizes])
    a_eq = np.zeros((len(sizes), offsets[-1]))
    for row, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        a_eq[row, start:stop] = 1.0
    result = linprog(np.concatenate(objective), A_ub=np.concatenate(cost)[None, :], b_ub=[limit], A_eq=a_eq,
                     b_eq=np.ones(len(sizes)), bounds=(0, 1), method="highs-ds")
    if result.status != 0:
        return None
    groups = [np.clip(result.x[start:stop], 0.0, 1.0) for start, stop in zip(offsets[:-1], offsets[1:])]
    if allowed is None:
        return groups
    full = []
    for x, m in zip(groups, allowed):
        row = np.zeros(len(m))
        row[m] = x
        full.append(row)
    return full


def round_to_choices(solution: Sequence[np.ndarray], cost: Sequence[np.ndarray]) -> list[int]:
    """One option per group of an LP vertex: a fractional group takes the cheapest option of its support, which
    keeps the constraint."""
    choices = []
    for x, c in zip(solution, cost):
        support = np.flatnonzero(x > SUPPORT_ATOL)
        choices.append(int(support[np.argmin(c[support])]) if len(support) > 1 else int(np.argmax(x)))
    return choices


def block_sum_at(cost, ms: float) -> float:
    """The sum over the searched positions' uncalibrated latencies whose calibrated prediction is `ms` (`cost`: a
    ChainCost or CellCost; fixed blocks excluded)."""
    return cost.calibration.block_sum_at(ms) - cost.fixed_ms


def block_sum_budget(cost, budget_ms: float) -> float:
    """The limit a repair holds the searched positions' latency sum to: the budget's, tightened by BUDGET_RTOL."""
    return tight_limit(block_sum_at(cost, budget_ms))


def repair(scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: Sequence[int], limit: float,
           allowed: Sequence[np.ndarray] | None = None, low: float = 0.0) -> list[int]:
    """Down to Σ lat[c] ≤ limit, each step the faster option that loses the least score per millisecond of the
    excess it removes (savings past `limit` earn nothing), among those that stay at or above `low` where any
    does (a repair that overshoots the band's floor only makes a fill undo it elsewhere); stops where no faster
    option is left."""
    choices = list(choices)
    used = sum(t[c] for t, c in zip(lat, choices))
    while used > limit:
        moves = _Moves(scores, lat, choices, allowed)
        faster = moves.extra < 0
        above_floor = faster & (used + moves.extra >= low)
        if above_floor.any():
            faster = above_floor
        removed = np.minimum(-moves.extra, used - limit)
        move = moves.cheapest(faster, moves.loss / np.where(faster, removed, 1.0))
        if move is None:
            break
        used = moves.apply(move, choices, used)
    return choices


def spend_slack(scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: Sequence[int], limit: float,
                allowed: Sequence[np.ndarray] | None = None) -> list[int]:
    """While a higher-scoring option fits within `limit`, take the one with the best score gain per millisecond
    (a faster one first: its gain is free)."""
    choices = list(choices)
    used = sum(t[c] for t, c in zip(lat, choices))
    while True:
        moves = _Moves(scores, lat, choices, allowed)
        gain = -moves.loss
        move = moves.cheapest((gain > 0) & (used + moves.extra <= limit), -gain / np.maximum(moves.extra, 1e-12))
        if move is None:
            return choices
        used = moves.apply(move, choices, used)


def fill_to_floor(scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: Sequence[int], low: float,
                  high: float, allowed: Sequence[np.ndarray] | None = None, pairs: bool = True) -> list[int]:
    """Raise Σ lat[c] to at least `low` (never above `high`), each step the slower option losing the least score
    per millisecond of the gap it closes (milliseconds past `low` earn nothing, so where scores barely differ the
    fill does not swap in the slowest option everywhere); with `pairs`, where no single one fits under `high`, two
    positions change at once (one may slow down and the other speed up), since coarse latencies can step over the
    band one position at a time."""
    choices = list(choices)
    used = sum(t[c] for t, c in zip(lat, choices))
    while used < low:
        moves = _Moves(scores, lat, choices, allowed)
        single = (moves.extra > 0) & (moves.extra <= high - used)
        closed = np.minimum(moves.extra, low - used)
        move = moves.cheapest(single, moves.loss / np.where(single, closed, 1.0))
        if move is None and pairs:
            move = moves.cheapest_pair(high - used, low - used)
        if move is None:
            break
        used = moves.apply(move, choices, used)
    return choices


class _Moves:
    """Every single-position move from `choices` to another allowed option, position-major: its position, option,
    latency added and score lost."""

    def __init__(self, scores: Sequence[np.ndarray], lat: Sequence[np.ndarray], choices: Sequence[int],
                 allowed: Sequence[np.ndarray] | None):
        self.lat = lat
        positions, options, extra, loss = [], [], [], []
        for position, (s, t) in enumerate(zip(scores, lat)):
            current = choices[position]
            other = np.ones(len(t), dtype=bool) if allowed is None else np.array(allowed[position], dtype=bool)
            other[current] = False
            picked = np.flatnonzero(other)
            positions.append(np.full(len(picked), position))
            options.append(picked)
            extra.append(t[picked] - t[current])
            loss.append(s[current] - s[picked])
        empty = [np.zeros(0)]  # a space without positions has no move
        self.position = np.concatenate(empty + positions).astype(int)
        self.option = np.concatenate(empty + options).astype(int)
        self.extra = np.concatenate(empty + extra).astype(float)
        self.loss = np.concatenate(empty + loss).astype(float)

    def cheapest(self, eligible: np.ndarray, rate: np.ndarray) -> list[int] | None:
        """The eligible move of the lowest rate (the first in order on ties), as a list of move indices."""
        indices = np.flatnonzero(eligible)
        return [int(indices[np.argmin(rate[indices])])] if len(indices) else None

    def cheapest_pair(self, room: float, gap: float) -> list[int] | None:
        """Two moves at different positions adding latency within (0, room] at the least score lost per ms of the
        `gap` they close."""
        gained = self.extra[:, None] + self.extra[None, :]
        pair = (self.position[:, None] < self.position[None, :]) & (gained > 0) & (gained <= room)
        if not pair.any():
            return None
        closed = np.where(pair, np.minimum(gained, gap), 1.0)
        rate = np.where(pair, (self.loss[:, None] + self.loss[None, :]) / closed, np.inf)
        i, j = np.unravel_index(int(np.argmin(rate)), rate.shape)
        return [int(i), int(j)]

    def apply(self, move: list[int], choices: list[int], used: float) -> float:
        """Make the moves in `choices`; returns the latency sum after them."""
        for index in move:
            position, option = self.position[index], self.option[index]
            used += self.lat[position][option] - self.lat[position][choices[position]]
            choices[position] = int(option)
        return used
