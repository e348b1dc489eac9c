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
'argmax', 'lp', 'greedy', with '+fill' (or 'fill') when the floor moved it (a DerivationMethod).
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hwnas.budget.costs import ChainCost
from hwnas.budget.knapsack import (
    block_sum_at,
    block_sum_budget,
    fill_to_floor,
    masked_scores,
    repair,
    round_to_choices,
    solve_lp,
    spend_slack,
)
from hwnas.errors import HwnasError

ProjectionMethod = Literal["lp", "greedy"]
METHODS = typing.get_args(ProjectionMethod)


Step = Literal["route", "lp", "greedy", "fill", "select"]


@dataclass(frozen=True)
class DerivationMethod:
    """How a derived architecture was reached, in order: 'route' (DenseNAS's path search), a budget repair ('lp' or
    'greedy') when the argmax exceeded the budget, 'fill' when it lay under the floor, 'select' when a band
    candidate scored better; no step when the argmax met the budget. Written to the run files as 'lp+fill'."""

    steps: tuple[Step, ...] = ()

    def then(self, *steps: Step) -> DerivationMethod:
        return DerivationMethod(self.steps + steps)

    def without(self, step: Step) -> DerivationMethod:
        return DerivationMethod(tuple(s for s in self.steps if s != step))

    @property
    def repaired(self) -> bool:
        """Whether anything but the choice among band candidates moved the argmax."""
        return any(step != "select" for step in self.steps)

    def __contains__(self, step: str) -> bool:
        return step in self.steps

    def __str__(self) -> str:
        return "+".join(self.steps) or "argmax"


ARGMAX = DerivationMethod()


@dataclass(frozen=True)
class Projection:
    """A discrete choice per position, its calibrated predicted latency, and how it was found."""

    choices: tuple[int, ...]
    predicted_ms: float
    argmax_ms: float  # the unconstrained argmax's predicted latency
    method: DerivationMethod  # no step when nothing needed repair, else 'lp' or 'greedy' (and 'fill')


def _arrays(cost: ChainCost) -> list[np.ndarray]:
    return [c.detach().cpu().numpy().astype(float) for c in cost.candidates_ms]


def _lp(scores: list[np.ndarray], lat: list[np.ndarray], limit: float) -> list[int] | None:
    """The LP relaxation's highest-scoring vertex within `limit`, rounded to choices (None where it fails)."""
    solution = solve_lp([-s for s in scores], lat, limit)
    return None if solution is None else round_to_choices(solution, lat)


def project_chain(scores: Sequence[np.ndarray], cost: ChainCost, budget_ms: float, method: str = "lp",
                  allowed: Sequence[np.ndarray] | None = None, floor: float = 0.0) -> Projection:
    """The highest-scoring choices whose predicted latency ≤ `budget_ms` (and ≥ floor · budget when reachable);
    `allowed` masks out candidates."""
    projection = _project(scores, cost, budget_ms, method, allowed)
    if floor <= 0 or projection.predicted_ms >= floor * budget_ms:
        return projection
    lat = _arrays(cost)
    choices = fill_to_floor(masked_scores(scores, allowed), lat, projection.choices,
                            block_sum_at(cost, floor * budget_ms), block_sum_budget(cost, budget_ms), allowed)
    return Projection(tuple(choices), cost.of_choices(choices), projection.argmax_ms, projection.method.then("fill"))


def _project(scores: Sequence[np.ndarray], cost: ChainCost, budget_ms: float, method: str,
             allowed: Sequence[np.ndarray] | None) -> Projection:
    if method not in METHODS:
        raise HwnasError(f"projection method '{method}': expected one of {', '.join(METHODS)}")
    lat = _arrays(cost)
    scores = masked_scores(scores, allowed)
    argmax = [int(np.argmax(s)) for s in scores]
    argmax_ms = cost.of_choices(argmax)
    if argmax_ms <= budget_ms:
        return Projection(tuple(argmax), argmax_ms, argmax_ms, ARGMAX)
    low, _ = cost.range_ms
    if budget_ms < low:
        raise HwnasError(f"budget {budget_ms:.4g} ms is below the fastest architecture ({low:.4g} ms)")
    limit = block_sum_budget(cost, budget_ms)
    choices = _lp(scores, lat, limit) if method == "lp" else None
    used = method if choices is not None else "greedy"
    if choices is None or sum(t[c] for t, c in zip(lat, choices)) > limit:
        # no `allowed` here: a masked option (MASKED_SCORE) stays a last resort where nothing else fits
        choices, used = spend_slack(scores, lat, repair(scores, lat, argmax, limit), limit), "greedy"
    return Projection(tuple(choices), cost.of_choices(choices), argmax_ms, ARGMAX.then(used))
