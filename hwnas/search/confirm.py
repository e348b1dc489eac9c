"""Measured confirmation: the one owner of how a budget is repaired on the device. The derived network is timed on
the device; where its measurement (the upper end of its confidence interval) exceeds the budget, or lies far under
it, the strategy derives again under a budget scaled by measured/predicted (projection only, no retraining), a few
rounds at most. The network kept is the one measured within the budget closest to it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hwnas.arch import Arch
from hwnas.lut.network_timing import NetworkTiming
from hwnas.strategies.base import Derivation
from hwnas.units import BUDGET_MARGIN, BUDGET_RTOL

BAND_FLOOR = 0.85  # a network measured under this share of the budget is filled toward the band
AIM = 0.97  # re-derive for this share of the budget: measured noise of a few percent stays inside it
STEP_DOWN = 0.95  # when a re-derivation returns the same network still over budget, shrink by this much more


@dataclass(frozen=True)
class ConfirmRound:
    """One measured network: the budget it was derived under, its prediction and its measurement."""

    derived_under_ms: float
    arch: str
    predicted_ms: float
    measured: NetworkTiming

    def to_dict(self) -> dict[str, Any]:
        return {"derived_under_ms": self.derived_under_ms, "arch": self.arch, "predicted_ms": self.predicted_ms,
                **self.measured.to_dict()}


@dataclass(frozen=True)
class Confirmation:
    """Every round and which one was kept (None: none measured within the budget)."""

    budget_ms: float
    rounds: tuple[ConfirmRound, ...]
    kept: int | None

    @property
    def measured(self) -> NetworkTiming | None:
        return None if self.kept is None else self.rounds[self.kept].measured

    def to_dict(self) -> dict[str, Any]:
        kept = None if self.kept is None else self.rounds[self.kept]
        return {"budget_ms": self.budget_ms, "rounds": [r.to_dict() for r in self.rounds], "kept_round": self.kept,
                "measured_ms": None if kept is None else kept.measured.median_ms,
                "measured_ci_upper_ms": None if kept is None else kept.measured.upper_ms,
                "within_budget": kept is not None, "in_band": kept is not None and
                kept.measured.median_ms >= BAND_FLOOR * self.budget_ms}


def rederive(strategy: Any, budget_ms: float) -> Derivation:
    """The strategy's derivation under another budget (projection of its learned weights; nothing is trained)."""
    problem = strategy.problem
    strategy.problem = replace(problem, budget_ms=budget_ms)
    try:
        return strategy.derive()
    finally:
        strategy.problem = problem


def confirm_on_device(strategy: Any, derivation: Derivation, budget_ms: float,
                      measure: Callable[[Arch], NetworkTiming], range_ms: tuple[float, float], rounds: int = 3,
                      on_round: Callable[[ConfirmRound], None] | None = None,
                      ) -> tuple[Derivation | None, Confirmation]:
    """Measure `derivation`; re-derive and measure again (at most `rounds` more times) until a network measures
    within [BAND_FLOOR · budget, budget]; `range_ms` (the space's predicted fastest and slowest) bounds the budgets
    derived under. Returns the kept derivation (None when none measured within the budget) and every round."""
    lowest, highest = range_ms[0] * (1 + BUDGET_MARGIN), range_ms[1]
    current, target = derivation, budget_ms
    done: list[ConfirmRound] = []
    kept: tuple[int, Derivation] | None = None
    seen: dict[str, NetworkTiming] = {}
    for round_index in range(rounds + 1):
        text = current.arch.to_string()
        timing = seen.get(text) or measure(current.arch)
        seen[text] = timing
        done.append(ConfirmRound(target, text, current.predicted_ms, timing))
        if on_round:
            on_round(done[-1])
        within = timing.upper_ms <= budget_ms
        if within and (kept is None or timing.median_ms > done[kept[0]].measured.median_ms):
            kept = (round_index, current)
        if within and timing.median_ms >= BAND_FLOOR * budget_ms or round_index == rounds:
            break
        next_target = _next_target(done, budget_ms)
        next_target = min(max(next_target, lowest), highest)
        if any(abs(next_target - r.derived_under_ms) <= BUDGET_RTOL * budget_ms for r in done):
            break  # derived under this budget already (the space's fastest or slowest network, or a closed bracket)
        target = next_target
        current = rederive(strategy, target)
    confirmation = Confirmation(budget_ms, tuple(done), None if kept is None else kept[0])
    if kept is None:
        return None, confirmation
    chosen = kept[1]
    return replace(chosen, detail={**chosen.detail, "confirmation": confirmation.to_dict()}), confirmation


def _next_target(done: list[ConfirmRound], budget_ms: float) -> float:
    """The budget to derive under next, aiming the measurement at AIM · budget. Once one derivation budget measured
    within the budget and another over it, interpolate between the two (measurements need not follow predictions
    linearly: a bracket cannot jump past the band); before that, scale by measured/predicted of the last round."""
    goal = AIM * budget_ms
    under = [r for r in done if r.measured.upper_ms <= budget_ms]
    over = [r for r in done if r.measured.upper_ms > budget_ms]
    last = done[-1]
    if under and over:
        low = max(under, key=lambda r: r.derived_under_ms)
        high = min(over, key=lambda r: r.derived_under_ms)
        if low.derived_under_ms < high.derived_under_ms:
            span = high.measured.upper_ms - low.measured.upper_ms
            step = (goal - low.measured.upper_ms) / span if span > 0 else 0.5
            step = min(max(step, 0.1), 0.9)  # strictly inside the bracket
            return low.derived_under_ms + step * (high.derived_under_ms - low.derived_under_ms)
    scaled = goal * last.predicted_ms / last.measured.upper_ms  # the device runs measured/predicted of the table
    if last.measured.upper_ms > budget_ms and scaled >= last.derived_under_ms:
        scaled = last.derived_under_ms * STEP_DOWN  # the same network again would measure the same
    return scaled


def not_met_message(confirmation: Confirmation, device: str) -> str:
    """The one line a search ends with when no network measured within the budget on `device`."""
    best = min(confirmation.rounds, key=lambda r: r.measured.upper_ms)
    return (f"no derived network ran within the budget {confirmation.budget_ms:.4g} ms on {device} after "
            f"{len(confirmation.rounds)} measurement(s): the fastest measured {best.measured.median_ms:.4g} ms (CI "
            f"upper {best.measured.upper_ms:.4g} ms); the run's files are kept: raise the budget, or re-profile the "
            "device if it changed")
