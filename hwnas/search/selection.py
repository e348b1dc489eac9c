"""Final selection inside the supernet: the derived architecture and N others drawn from the search's final
architecture distribution within the budget band are each scored with the shared weights (batch norm re-estimated
per network) on the images that never trained those weights, and the best is kept.

A short search often ends with architecture weights close to uniform, and then argmax and budget repair pick
almost by chance; the supernet's weights still tell networks apart (the evaluation step of one-shot searches such
as SPOS and OFA). Draws are Gumbel-perturbed log-probabilities projected into [floor · budget, budget], so a
sharp distribution yields its own neighbourhood and a flat one a spread of the band.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from hwnas.budget.costs import ChainCost
from hwnas.budget.projection import project_chain
from hwnas.strategies.base import Derivation


@dataclass(frozen=True)
class Candidate:
    """One network scored inside the supernet."""

    choices: tuple[int, ...]
    predicted_ms: float
    acc: float
    derived: bool  # the strategy's own derivation (argmax, repaired or filled)


def band_draws(log_probs: Sequence[np.ndarray], cost: ChainCost, budget_ms: float, floor: float, count: int,
               generator: np.random.Generator, exclude: Sequence[Sequence[int]] = (),
               attempts_per_draw: int = 20) -> list[tuple[int, ...]]:
    """Up to `count` distinct choices, each the band projection of log-probabilities plus Gumbel noise (a sample
    of the distribution conditioned on the band, for a distribution that factorises by position); -inf entries
    are never chosen, and a draw the fill cannot lift to the floor is dropped."""
    seen = {tuple(c) for c in exclude}
    draws: list[tuple[int, ...]] = []
    allowed = [np.isfinite(np.asarray(s, dtype=float)) for s in log_probs]
    for _ in range(count * attempts_per_draw):
        if len(draws) == count:
            break
        scores = [np.where(a, np.asarray(s, dtype=float), 0.0) + generator.gumbel(size=len(s))
                  for s, a in zip(log_probs, allowed)]
        projection = project_chain(scores, cost, budget_ms, "lp", allowed=allowed, floor=floor)
        choices = projection.choices
        if choices not in seen and projection.predicted_ms >= floor * budget_ms:  # the fill may fall short
            seen.add(choices)
            draws.append(choices)
    return draws


def select_in_supernet(derived: Sequence[int], draws: Sequence[Sequence[int]],
                       score: Callable[[Sequence[int]], float], predict_ms: Callable[[Sequence[int]], float],
                       on_scored: Callable[[int, int, Candidate], None] | None = None) -> list[Candidate]:
    """Every candidate (the derived one first) with its supernet score, best first; ties keep the derived one."""
    candidates = []
    pool = [tuple(derived), *(tuple(d) for d in draws)]
    for index, choices in enumerate(pool):
        candidate = Candidate(choices, float(predict_ms(choices)), float(score(choices)), index == 0)
        candidates.append(candidate)
        if on_scored is not None:
            on_scored(index + 1, len(pool), candidate)
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].acc, i))
    return [candidates[i] for i in order]


HELDOUT_SPLITS = ("train_arch", "val")  # every image that never trained the supernet's weights, but the test


def supernet_scorer(supernet: torch.nn.Module, splits: dict, batch_size: int, seed: int, device: torch.device,
                    scoring: Sequence[str] = HELDOUT_SPLITS) -> Callable[[Sequence[int]], float]:
    """score(choices): accuracy of that network inside `supernet` over the `scoring` splits, batch norm
    re-estimated on splits['train_weights']."""
    from hwnas.training import recalibrated_hits

    def score(choices: Sequence[int]) -> float:
        def forward(x: torch.Tensor) -> torch.Tensor:
            return supernet.forward_choices(x, list(choices))

        calibration = splits["train_weights"].batches(batch_size, seed=seed, shuffle=False, augment=False)
        evaluation = (batch for name in scoring
                      for batch in splits[name].batches(256, shuffle=False, augment=False, drop_last=False))
        was_training = supernet.training
        try:
            correct, seen = recalibrated_hits(supernet, forward, calibration, evaluation, device)
        finally:
            supernet.train(was_training)  # recalibration leaves it in eval mode
        return correct / max(seen, 1.0)

    return score


def select_derivation(strategy, derivation: Derivation, count: int, splits: dict, batch_size: int, seed: int,
                      device: torch.device, note: Callable[[str], None] = lambda text: None) -> Derivation:
    """`derivation` replaced by the best of it and `count` band draws from `strategy`'s final distribution, scored
    inside its supernet on the images that never trained its weights, HELDOUT_SPLITS (more images, less noise in
    each score; batch norm re-estimated on 'train_weights'). Every rank scores them all, so all
    ranks choose alike."""
    problem = strategy.problem
    derived = tuple(derivation.detail["choices"])
    draws = band_draws(strategy.choice_log_probs(), strategy.cost, problem.budget_ms, problem.budget_floor, count,
                       np.random.default_rng(seed), exclude=[derived])
    score = supernet_scorer(strategy.supernet, splits, batch_size, seed, device)
    note(f"selection: scoring the derived network and {len(draws)} draws in the budget band inside the supernet")
    ranked = select_in_supernet(
        derived, draws, score, strategy.cost.of_choices,
        lambda i, n, c: note(f"  candidate {i}/{n}: {c.predicted_ms:.4g} ms, supernet accuracy {c.acc:.4f}"
                             f"{' (derived)' if c.derived else ''}"))
    best, own = ranked[0], next(c for c in ranked if c.derived)
    table = [{"arch": problem.space.arch(list(c.choices)).to_string(), "predicted_ms": c.predicted_ms,
              "supernet_acc": c.acc, "derived": c.derived} for c in ranked]
    detail = {**derivation.detail, "choices": list(best.choices),
              "selection": {"candidates": len(ranked), "derived_acc": own.acc,
                            "chosen_acc": best.acc, "table": table}}
    if best.derived:
        return replace(derivation, detail=detail)
    arch = problem.space.arch(list(best.choices))
    return replace(derivation, arch=arch, predicted_ms=problem.latency.predict(arch),
                   method=derivation.method.then("select"), detail=detail)
