"""The DARTS-family strategies through the shared trainer and `hwnas search` on the DARTS space (tiny proxy
supernets, digits at 16 px, a real quick LUT): budgets met, diagnostics written, resume, retraining, `hwnas diff`,
and D-DARTS' per-cell ablation gradients against plain autograd."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from hwnas.cells import CellArch, get_cell_space
from hwnas.cells.latency import CellCost, latency_penalty
from hwnas.cells.losses import ablation_loss, marginal_contributions, zero_one_loss
from hwnas.cli import app
from hwnas.config import DataConfig, SearchConfig
from hwnas.search.runner import SilentReporter, run_search
from hwnas.strategies.base import SearchProblem, StepContext
from hwnas.strategies.ddarts import DDartsStrategy
from tests.search_helpers import measured_model

pytestmark = pytest.mark.slow  # full searches per strategy, a DDP search, CLI search+train (~190 s)

torch.set_num_threads(1)
runner = CliRunner()
RESOLUTION = 16
PROXY = {"search_channels": 2, "search_layers": 3, "search_resolution": 8}
STRATEGIES = {
    "darts": {},
    "darts-2nd": {"order": 2},
    "fairdarts": {},
    "sp-darts": {"select": "ostr"},
    "ostr": {"early_stop": 1},
    "ddarts": {"search_layers": 5},
}


@pytest.fixture(scope="module")
def lut(tmp_path_factory):
    path = tmp_path_factory.mktemp("darts-lut") / "cpu.csv"
    model = measured_model(path, get_cell_space("darts", RESOLUTION, 10))
    return path, model


def config(lut_path, strategy: str, params: dict, budget: str = "60%", epochs: int = 2) -> SearchConfig:
    return SearchConfig(space="darts", strategy=strategy, budget=budget, lut=str(lut_path), epochs=epochs,
                        warmup_epochs=1, threads=1, strategy_params={**PROXY, **params}, calibrate_networks=0,
                        confirm=False,
                        data=DataConfig(resolution=RESOLUTION, batch_size=16, limit=64))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategy_searches_within_budget(lut, tmp_path, name):
    strategy = name.removesuffix("-2nd")
    result = run_search(config(lut[0], strategy, STRATEGIES[name]), tmp_path / "run")
    summary = result.summary
    assert summary["predicted_ms"] <= summary["budget_ms"] * (1 + 1e-9)
    arch = CellArch.load(tmp_path / "run" / "arch.json")
    assert arch.space.name == "darts" and arch.space.layers == 20  # the deployed network, not the proxy
    assert (tmp_path / "run" / "cells.csv").exists() and (tmp_path / "run" / "cells.png").exists()
    assert {"skip_connect", "arch_entropy"} <= set(result.history[-1])
    if strategy == "ddarts":
        assert arch.genotype.names == tuple(f"c{i}" for i in range(20))  # 5 searched cells grown (Algorithm 2)
    with torch.no_grad():
        assert arch.build().eval()(torch.randn(1, 3, RESOLUTION, RESOLUTION)).shape == (1, 10)


def test_cli_search_with_a_budget_in_ms_then_train_and_diff(lut, tmp_path):
    path, model = lut
    low, high = CellCost.from_model(get_cell_space("darts", RESOLUTION, 10), model).range_ms
    proxy = [item for k, v in PROXY.items() for item in ("-p", f"{k}={v}")]

    def args(budget_ms: float, out: str) -> list[str]:
        return ["search", "--space", "darts", "--strategy", "sp-darts", "--select", "ostr", "--device", "cpu",
                "--latency-budget", f"{budget_ms:.4f}ms", "--lut", str(path), "--resolution", str(RESOLUTION),
                "--limit", "64", "--batch-size", "16", "--epochs", "2", "--threads", "1", *proxy,
                "--calibrate-networks", "0", "--no-confirm", "--out",
                str(tmp_path / out)]

    result = runner.invoke(app, [*args((low + high) / 2, "a"), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["arch"].startswith("cells:darts:16:") and summary["predicted_ms"] <= summary["budget_ms"]

    too_tight = runner.invoke(app, args(low / 2, "b"))
    assert too_tight.exit_code == 1 and "feasible range" in too_tight.output and "Traceback" not in too_tight.output

    trained = runner.invoke(app, ["train", str(tmp_path / "a"), "--epochs", "1", "--json"])
    assert trained.exit_code == 0, trained.output
    assert 0.0 <= json.loads(trained.stdout)["test_acc"] <= 1.0

    other = get_cell_space("darts", RESOLUTION, 10).sample(__import__("random").Random(0)).to_string()
    diff = runner.invoke(app, ["diff", str(tmp_path / "a"), other, "--json"])
    assert diff.exit_code == 0, diff.output
    report = json.loads(diff.stdout)
    assert 0.0 < report["distance"] <= 1.0 and set(report["cells"]) == {"normal", "reduce"}
    same = runner.invoke(app, ["diff", str(tmp_path / "a" / "arch.json"), str(tmp_path / "a"), "--json"])
    assert json.loads(same.stdout)["distance"] == 0.0
    wrong = runner.invoke(app, ["diff", "224:relu:cn_k3_c8,fc_c10", other])
    assert wrong.exit_code == 1 and "compares cell architectures" in wrong.output


class Interrupted(Exception):
    pass


class InterruptAfterSecondEpoch(SilentReporter):
    """Stops the search right after epoch 2's checkpoint is written, as a kill at that moment would."""

    def epoch_finished(self, record) -> None:
        if record.epoch == 1:
            raise Interrupted


def test_resumed_sparse_search_ends_with_the_same_architecture(lut, tmp_path):
    settings = config(lut[0], "sp-darts", {"select": "ostr"}, epochs=3)
    whole = run_search(settings, tmp_path / "whole")
    with pytest.raises(Interrupted):
        run_search(settings, tmp_path / "part", reporter=InterruptAfterSecondEpoch())
    assert not (tmp_path / "part" / "arch.json").exists()
    resumed = run_search(None, tmp_path / "part", resume=True)
    assert resumed.summary["arch"] == whole.summary["arch"]
    records = (tmp_path / "part" / "cells.csv").read_text().splitlines()
    assert records == (tmp_path / "whole" / "cells.csv").read_text().splitlines()


def test_ddarts_gradients_equal_per_cell_autograd(lut):
    """Algorithm 1's per-cell step: ∂L_T^i/∂α_i for every cell, from two backward passes, equals one autograd
    pass per cell through L_CE + w_01 L_01^i + w_AB L_AB^i (+ the latency hinge)."""
    path, model = lut
    space = get_cell_space("darts", RESOLUTION, 10)
    low, _ = CellCost.from_model(space, model).range_ms
    params = {**PROXY, "search_layers": 5, "latency_weight": 2.0}
    strategy = DDartsStrategy(SearchProblem(space, model, low * 0.8, seed=3), params)
    with torch.no_grad():
        for alpha in strategy.alphas.values():
            alpha.normal_(0, 1.0)
    x, y = torch.randn(6, 3, RESOLUTION, RESOLUTION), torch.randint(0, 10, (6,))
    groups = list(strategy.alphas)
    weights = strategy.relaxed("arch")
    xs = strategy.proxy_input(x)
    full = F.cross_entropy(strategy.supernet(xs, weights), y)
    ablated = [F.cross_entropy(strategy.supernet(xs, weights, [j != i for j in range(len(groups))]), y)
               for i in range(len(groups))]
    ab = ablation_loss(marginal_contributions(full, ablated))
    hinge = latency_penalty(strategy.deployed_expected_ms(weights), strategy.problem.budget_ms, 2.0)
    p = strategy.params
    expected = []
    for i, group in enumerate(groups):
        total = full + p.w01 * zero_one_loss([strategy.alphas[group]]) + p.w_ab * ab[i] + hinge
        expected.append(torch.autograd.grad(total, [strategy.alphas[group]], retain_graph=True)[0])
    optimizer = torch.optim.SGD(strategy.weight_parameters(), lr=0.01)
    strategy.arch_backward(x, y, StepContext((x, y), optimizer, 0.01, 1, 0))
    for group, grad in zip(groups, expected):
        assert torch.allclose(strategy.alphas[group].grad, grad, rtol=1e-4, atol=1e-7), group


def test_strategy_parameters_are_checked(lut):
    path, model = lut
    space = get_cell_space("darts", RESOLUTION, 10)
    from hwnas.errors import ConfigError
    from hwnas.strategies.darts import DartsStrategy

    for bad in ({"select": "biggest"}, {"order": 3}):
        with pytest.raises(ConfigError):
            DartsStrategy(SearchProblem(space, model, 5.0), {**PROXY, **bad})
    with pytest.raises(ConfigError, match="Algorithm 2"):
        DDartsStrategy(SearchProblem(space, model, 5.0), {**PROXY, "search_layers": 4})
    assert replace(config(path, "darts", {}), epochs=1).strategy_params["search_channels"] == 2


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_process_search_keeps_strengths_and_stops_together(lut, tmp_path):
    """2 gloo ranks: φ draws and α stay identical, the operation strength is averaged over ranks, so the OStr
    early stop fires on both ranks at once (a rank stopping alone would hang the other)."""
    import subprocess
    import sys

    path, _ = lut
    launcher = tmp_path / "hwnas_main.py"
    launcher.write_text("from hwnas.cli import main\nmain()\n")
    out = tmp_path / "ddp"
    proxy = [item for k, v in PROXY.items() for item in ("-p", f"{k}={v}")]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
               "search", "--space", "darts", "--strategy", "sp-darts", "--select", "ostr", "-p", "early_stop=1",
               *proxy, "--lut", str(path), "--out", str(out), "--resolution", str(RESOLUTION), "--limit", "64",
               "--batch-size", "8", "--epochs", "3", "--threads", "1", "--latency-budget", "50%", "--json",
               "--calibrate-networks", "0", "--no-confirm"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "search.json").read_text())
    assert summary["world_size"] == 2 and summary["arch_params_identical_across_ranks"]
    assert summary["predicted_ms"] <= summary["budget_ms"]


def test_the_latency_term_pulls_a_search_below_the_band_up_into_it(lut):
    """Under the band's floor the hinge's gradient raises the expected latency (the search moves toward the band
    itself, so the fill only closes what is left); inside the band it is zero."""
    from hwnas.strategies.darts import DartsStrategy

    path, model = lut
    space = get_cell_space("darts", RESOLUTION, 10)
    cost = CellCost.from_model(space, model)
    low, high = cost.range_ms
    budget = high * 0.98  # uniform weights expect about the middle of the range: far under 0.9 x this budget
    params = {**PROXY, "latency_estimate": "expected"}
    strategy = DartsStrategy(SearchProblem(space, model, budget, seed=0, budget_floor=0.9), params)
    weights = strategy.relaxed("arch")
    expected = strategy.deployed_expected_ms(weights)
    assert float(expected) < 0.9 * budget
    penalty = strategy.regularizer(weights)
    grads = torch.autograd.grad(penalty, strategy.arch_parameters())
    with torch.no_grad():
        stepped = {g: F.softmax(a - 1.0 * d, -1) for (g, a), d in zip(strategy.alphas.items(), grads)}
    assert float(strategy.deployed_expected_ms(stepped)) > float(expected)
    no_floor = DartsStrategy(SearchProblem(space, model, budget, seed=0, budget_floor=0.0), params)
    assert float(no_floor.regularizer(no_floor.relaxed("arch"))) == 0.0
    inside = latency_penalty(torch.tensor(0.95 * budget), budget, 1.0, floor=0.9)
    assert float(inside) == 0.0


@pytest.mark.parametrize("where", [0.5, 1.5])
def test_the_default_latency_term_holds_the_derived_network_with_the_expectations_gradient(lut, where):
    """`latency_estimate=derived`: the hinge's value is the network derive() would pick now (under or over the
    band), its gradient E[LAT]'s, so flat weights whose expectation sits in the band still move the network."""
    from hwnas.strategies.darts import DartsStrategy

    path, model = lut
    space = get_cell_space("darts", RESOLUTION, 10)
    probe = DartsStrategy(SearchProblem(space, model, 1.0, seed=0), PROXY)
    derived = probe.cost.of_genotype(probe.current_genotype())
    budget = derived / where  # the derived network at half or one and a half times the budget
    strategy = DartsStrategy(SearchProblem(space, model, budget, seed=0, budget_floor=0.9), PROXY)
    weights = strategy.relaxed("arch")
    penalty = strategy.regularizer(weights)
    assert float(penalty) == pytest.approx(max(0.0, where - 1) + max(0.0, 0.9 - where))
    reference = (1 if where > 1 else -1) * strategy.deployed_expected_ms(weights) / budget
    for got, want in zip(torch.autograd.grad(penalty, strategy.arch_parameters(), retain_graph=True),
                         torch.autograd.grad(reference, strategy.arch_parameters())):
        assert torch.allclose(got, want)
