"""Final selection inside the supernet: band draws stay in the band and follow the distribution, the best-scored
candidate wins, and a search (or a finished one resumed with --candidates) records what it scored."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwnas.budget.costs import ChainCost
from hwnas.cli import app
from hwnas.errors import HwnasError
from hwnas.search.runner import run_search
from hwnas.search.selection import Candidate, band_draws, select_in_supernet
from hwnas.strategies import DEFAULT_CANDIDATES, candidates_to_select
from tests.search_helpers import measured_model, tiny_chain, tiny_search_config, write_tiny_chain


def _cost(sizes, seed=0) -> ChainCost:
    rng = np.random.default_rng(seed)
    return ChainCost(0.5, tuple(torch.tensor(rng.uniform(0.1, 2.0, n), dtype=torch.float64) for n in sizes))


def test_band_draws_are_distinct_in_the_band_and_skip_forbidden_candidates():
    cost = _cost([3, 3, 4, 2, 3])
    low, high = cost.range_ms
    budget = low + 0.5 * (high - low)
    log_probs = [np.log(np.full(n, 1.0 / n)) for n in (3, 3, 4, 2, 3)]
    log_probs[2][0] = -np.inf
    draws = band_draws(log_probs, cost, budget, 0.9, 12, np.random.default_rng(0), exclude=[])
    assert len(draws) == len(set(draws)) == 12
    for choices in draws:
        assert 0.9 * budget <= cost.of_choices(choices) <= budget
        assert choices[2] != 0
    again = band_draws(log_probs, cost, budget, 0.9, 12, np.random.default_rng(0), exclude=[draws[0]])
    assert draws[0] not in again


def test_band_draws_follow_a_sharp_distribution():
    cost = _cost([3] * 8, seed=1)
    budget = cost.range_ms[1]  # everything fits: draws are plain samples of the distribution
    favourite = [0, 2, 1, 2, 0, 1, 1, 2]
    log_probs = [np.log(np.where(np.arange(3) == f, 0.9, 0.05)) for f in favourite]
    draws = band_draws(log_probs, cost, budget, 0.0, 20, np.random.default_rng(1))
    share = np.mean([[c == f for c, f in zip(choices, favourite)] for choices in draws])
    assert share > 0.75  # 20 distinct draws of a 0.9-peaked distribution: far above the uniform 1/3


def test_select_in_supernet_keeps_the_best_and_the_derived_one_on_ties():
    scores = {(0, 0): 0.5, (1, 0): 0.7, (0, 1): 0.7, (1, 1): 0.5}
    ranked = select_in_supernet((0, 0), [(1, 0), (0, 1), (1, 1)], lambda c: scores[tuple(c)], lambda c: sum(c))
    assert [c.choices for c in ranked] == [(1, 0), (0, 1), (0, 0), (1, 1)]
    assert ranked[2] == Candidate((0, 0), 0.0, 0.5, True)
    tied = select_in_supernet((1, 1), [(1, 0)], lambda c: 0.6, lambda c: 1.0)
    assert tied[0].derived


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.getbasetemp() / "selection"
    path.mkdir(exist_ok=True)
    measured_model(path / "cpu.csv", tiny_chain(path))
    return path


@pytest.mark.parametrize("strategy", ["fbnet", "hardcore"])
def test_search_keeps_the_best_scored_candidate_within_the_band(folder, tmp_path, strategy):
    result = run_search(tiny_search_config(folder, strategy, budget="50%", select_candidates=4), tmp_path / "run")
    selection = result.summary["selection"]
    table = selection["table"]
    assert selection["candidates"] == len(table) == 5 and sum(row["derived"] for row in table) == 1
    assert len({row["arch"] for row in table}) == 5
    budget = result.config.budget_ms
    for row in table:
        assert result.config.budget_floor * budget * (1 - 1e-9) <= row["predicted_ms"] <= budget
    assert table[0]["supernet_acc"] == max(row["supernet_acc"] for row in table)
    assert result.summary["arch"] == table[0]["arch"]
    assert ("select" in result.derivation.method) == (not table[0]["derived"])
    assert "supernet" in result.derivation.describe()
    assert json.loads((result.run_dir / "arch.json").read_text())["predicted_ms"] == pytest.approx(
        result.derivation.predicted_ms)


def test_finished_search_resumed_with_candidates_selects_without_training(folder, tmp_path):
    plain = run_search(tiny_search_config(folder, "proxyless", budget="50%"), tmp_path / "run")
    assert plain.summary["selection"] is None
    history = (tmp_path / "run" / "history.csv").read_text()
    result = CliRunner().invoke(app, ["search", "--out", str(tmp_path / "run"), "--resume", "--candidates", "3",
                                      "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads((tmp_path / "run" / "search.json").read_text())
    assert (tmp_path / "run" / "history.csv").read_text() == history
    assert again["selection"]["candidates"] == 4
    assert "select_candidates: 3" in (tmp_path / "run" / "config.yaml").read_text()
    derived = next(row for row in again["selection"]["table"] if row["derived"])
    assert derived["arch"] == plain.summary["arch"]
    assert again["arch"] == again["selection"]["table"][0]["arch"]


def test_hardcore_selects_by_default_and_candidates_zero_keeps_its_derivation(folder, tmp_path):
    default = run_search(tiny_search_config(folder, "hardcore", budget="50%"), tmp_path / "default")
    table = default.summary["selection"]["table"]
    assert 1 < len(table) <= 1 + DEFAULT_CANDIDATES["hardcore"]  # fewer where the tiny space's band holds fewer
    assert "select_candidates: null" in (tmp_path / "default" / "config.yaml").read_text()  # resolves on resume too
    paper = run_search(tiny_search_config(folder, "hardcore", budget="50%", select_candidates=0), tmp_path / "paper")
    assert paper.summary["selection"] is None
    derived = next(row for row in table if row["derived"])
    assert derived["arch"] == paper.summary["arch"]  # the same search; only the last step differs
    assert candidates_to_select("fbnet", None) == 0 and candidates_to_select("hardcore", 5) == 5


def test_negative_candidates_are_refused(folder, tmp_path):
    with pytest.raises(HwnasError, match="select_candidates -1"):
        run_search(tiny_search_config(folder, "fbnet", budget="50%", select_candidates=-1), tmp_path / "run")
    result = CliRunner().invoke(app, ["search", "--out", str(tmp_path / "cli"), "--space",
                                      str(write_tiny_chain(folder)), "--latency-budget", "50%", "--lut",
                                      str(folder / "cpu.csv"), "--candidates", "-2", "--limit", "64"])
    assert result.exit_code == 2 and "--candidates" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "cli").exists()  # refused by the flag's bound, before any work
