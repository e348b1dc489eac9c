"""Every strategy ends within the budget, repairs an over-budget argmax (and says so), and is deterministic."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.arch import Arch
from hwnas.budget.costs import space_range_ms
from hwnas.search.runner import arch_confidence, run_search
from hwnas.strategies import SearchProblem, make_strategy
from tests.search_helpers import (
    measured_model,
    tiny_chain,
    tiny_dense,
    tiny_search_config,
)

STRATEGIES = ["fbnet", "proxyless", "hardcore", "densenas"]


def _search(folder, tmp_path, strategy: str, name: str = "run", **changes):
    space = tiny_dense() if strategy == "densenas" else None
    if space is not None:
        changes.setdefault("space", "tinydense")
    return run_search(tiny_search_config(folder, strategy, **changes), tmp_path / name, space=space)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_search_ends_within_budget(folder, tmp_path, strategy):
    result = _search(folder, tmp_path, strategy)
    budget = result.config.budget_ms
    low, high = result.range_ms
    assert budget == pytest.approx(low + 0.3 * (high - low))
    derived = result.derivation
    assert derived.predicted_ms <= budget
    floor = result.config.budget_floor * budget
    assert derived.repaired == (derived.argmax_ms > budget or derived.argmax_ms < floor)
    if "fill" in derived.method:  # the floor moved a low argmax up, never past the budget
        assert derived.predicted_ms >= min(derived.argmax_ms, budget) and "floor" in derived.describe()
    saved = json.loads((result.run_dir / "arch.json").read_text())
    assert saved["strategy"] == strategy and saved["budget_ms"] == budget
    assert saved["predicted_ms"] == pytest.approx(derived.predicted_ms)
    model = measured_model(folder / "cpu.csv", tiny_chain(folder), tiny_dense())
    assert model.predict(Arch.load(result.run_dir / "arch.json")) == pytest.approx(derived.predicted_ms)
    assert [row["epoch"] for row in result.history] == [0, 1]
    assert result.history[1]["arch_steps"] > 0
    for name in ("config.yaml", "history.csv", "supernet.pt", "search.json", "arch_weights.png", "latency.png"):
        assert (result.run_dir / name).exists(), name
    assert 0.0 <= json.loads((result.run_dir / "search.json").read_text())["arch_confidence"] <= 1.0
    if strategy == "hardcore":  # the hard constraint holds after every Frank-Wolfe step, hence every epoch
        assert all(row["expected_ms"] <= budget * (1 + 1e-6) for row in result.history)


def test_same_seed_same_architecture(folder, tmp_path):
    first = _search(folder, tmp_path, "fbnet", "a", strategy_params={"hard": True})
    second = _search(folder, tmp_path, "fbnet", "b", strategy_params={"hard": True})
    assert first.derivation.arch == second.derivation.arch
    def timeless(history):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in history]

    assert timeless(first.history) == timeless(second.history)


def _problem(folder, space, share: float) -> SearchProblem:
    model = measured_model(folder / "cpu.csv", tiny_chain(folder), tiny_dense())
    low, high = space_range_ms(space, model)
    return SearchProblem(space, model, low + share * (high - low), seed=0)


@pytest.mark.parametrize("strategy,params", [("fbnet", {"projection": "lp"}), ("fbnet", {"projection": "greedy"}),
                                             ("proxyless", {}), ("hardcore", {}), ("densenas", {})])
def test_over_budget_argmax_is_repaired(folder, strategy, params):
    space = tiny_dense() if strategy == "densenas" else tiny_chain(folder)
    problem = _problem(folder, space, 0.2)
    chosen = make_strategy(strategy, problem, params)
    with torch.no_grad():  # make the slowest candidates the most probable ones
        if strategy == "hardcore":
            for alpha, times in zip(chosen.alpha, chosen.cost.candidates_ms):
                alpha.copy_(torch.softmax(3 * times / times.max(), -1))
            for beta in chosen.beta:
                beta.copy_(torch.linspace(0.1, 1.0, len(beta)) / torch.linspace(0.1, 1.0, len(beta)).sum())
        elif strategy == "densenas":
            for node, logits in enumerate(chosen.beta):  # the longest path: every routing block
                logits.copy_(torch.tensor([-5.0 * (e.dst - e.src) for e in space.out_edges(node)]))
            for logits, times in zip(chosen.edge_alpha, chosen.cost.edge_ms):
                logits.copy_(5 * times / times.max())
            for block, times in zip(chosen.layer_alpha, chosen.cost.layer_ms):
                for logits in block:
                    logits.copy_(5 * times / times.max())
        else:
            for logits, times in zip(chosen.logits, chosen.cost.candidates_ms):
                logits.copy_(5 * times / times.max())
    derived = chosen.derive()
    assert derived.argmax_ms > problem.budget_ms
    assert derived.repaired and str(derived.method) != "argmax"
    assert derived.predicted_ms <= problem.budget_ms
    assert "repaired" in derived.describe()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_low_argmax_is_filled_to_the_floor(folder, strategy):
    """Fastest candidates most probable and a 90% floor: derive() upgrades ops until the floor, within budget."""
    space = tiny_dense() if strategy == "densenas" else tiny_chain(folder)
    model = measured_model(folder / "cpu.csv", tiny_chain(folder), tiny_dense())
    low, high = space_range_ms(space, model)
    problem = SearchProblem(space, model, low + 0.8 * (high - low), seed=0, budget_floor=0.9)
    chosen = make_strategy(strategy, problem, {})
    with torch.no_grad():
        if strategy == "hardcore":
            for alpha, times in zip(chosen.alpha, chosen.cost.candidates_ms):
                alpha.copy_(alpha * torch.softmax(-3 * times / times.max(), -1))
                alpha /= alpha.sum()
        elif strategy == "densenas":
            for logits, times in zip(chosen.edge_alpha, chosen.cost.edge_ms):
                logits.copy_(-5 * times / times.max())
            for block, times in zip(chosen.layer_alpha, chosen.cost.layer_ms):
                for logits in block:
                    logits.copy_(-5 * times / times.max())
        else:
            for logits, times in zip(chosen.logits, chosen.cost.candidates_ms):
                logits.copy_(-5 * times / times.max())
    derived = chosen.derive()
    assert derived.predicted_ms <= problem.budget_ms
    if derived.argmax_ms < 0.9 * problem.budget_ms:  # filled, or (DenseNAS) moved to another route
        assert derived.repaired and derived.predicted_ms > derived.argmax_ms
        assert "fill" in derived.method or "route" in derived.method


def test_arch_confidence_runs_from_uniform_to_one_hot():
    uniform, one_hot = np.full(4, 0.25), np.array([0.0, 1.0, 0.0, 0.0])
    assert arch_confidence([("a", uniform)]) == pytest.approx(0.0)
    assert arch_confidence([("a", one_hot)]) == pytest.approx(1.0)
    halfway = np.array([0.625, 0.125, 0.125, 0.125])  # top share 1/4 + (3/4)/2
    assert arch_confidence([("a", halfway), ("b", uniform)]) == pytest.approx(0.25)
    assert arch_confidence([("a", 2 * halfway)]) == pytest.approx(0.5)  # weights as shares: scale does not matter
    assert arch_confidence([("fixed", np.array([1.0]))]) is None and arch_confidence([]) is None
