"""Budget repair: the most probable discrete architecture whose predicted latency meets the budget.

For a chain space the problem is a multiple-choice knapsack: maximise Σ_l s_l[c_l] (s = log-probabilities of the
architecture distribution) subject to the predicted latency ≤ budget. When the argmax fits, it is the answer;
otherwise the LP relaxation (scipy `linprog`, dual simplex) has an optimal vertex with at most one fractional layer
(there is a single knapsack row), which is rounded to its faster option; or a greedy pass trades the least score
per millisecond saved, then spends what slack is left on the best score gain per millisecond.
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
                  allowed: Sequence[np.ndarray] | None = None) -> Projection:
    """The highest-scoring choices whose predicted latency ≤ `budget_ms`; `allowed` masks out candidates."""
    if method not in METHODS:
        raise HwnasError(f"projection method '{method}': expected one of {', '.join(METHODS)}")
    lat = _arrays(cost)
    scores = [np.where(a, np.asarray(s, dtype=float), -1e9) if allowed is not None else np.asarray(s, dtype=float)
              for s, a in zip(scores, allowed if allowed is not None else [None] * len(lat))]
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
