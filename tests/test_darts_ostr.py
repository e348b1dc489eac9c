"""OStr-DARTS (`ostr-darts.txt`): the gradient identity behind operation strength, the strength a strategy
accumulates equal to the mean absolute architecture gradient it is defined as (task loss only), OStr*, selection
by largest strength, and the early stop."""

import pytest
import torch
import torch.nn.functional as F

from hwnas.cells import get_cell_space
from hwnas.cells.latency import CellCost
from hwnas.cells.select import select_genotype
from hwnas.cells.supernet import MixedEdge
from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.lut.model import LatencyModel
from hwnas.strategies.base import SearchProblem, StepContext
from hwnas.strategies.darts import DartsStrategy
from hwnas.strategies.ostr import OperationStrength, SelectionStability
from tests.conftest import QUICK

torch.set_num_threads(1)
PROXY = {"search_channels": 2, "search_layers": 3, "search_resolution": 8}


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    space = get_cell_space("darts", 8, 4).with_network(2, 3)
    _, table = build_lut(get_device("cpu"), space.specs(), tmp_path_factory.mktemp("ostr") / "cpu.csv", QUICK,
                         steadiness=None)
    model = LatencyModel(table)
    low, high = CellCost.from_model(space, model).range_ms
    return space, model, low, high


def batches(count: int):
    generator = torch.Generator().manual_seed(7)
    return [(torch.randn(6, 3, 8, 8, generator=generator), torch.randint(0, 4, (6,), generator=generator))
            for _ in range(count)]


def test_architecture_gradient_is_weight_times_loss_change_estimate():
    """∂L/∂α_o = p_o · (∂L/∂x̄)ᵀ(o(x) − x̄) for x̄ = Σ_o p_o o(x) (OStr Eq. 9): the strength is |ΔL| scaled by p_o."""
    torch.manual_seed(0)
    edge = MixedEdge(("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"), 3, 1).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    target = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    alpha = torch.randn(4, dtype=torch.float64, requires_grad=True)
    p = F.softmax(alpha, -1)
    outputs = [op(x) for op in edge.candidates]
    mixed = sum(w * o for w, o in zip(p, outputs))
    loss = ((mixed - target) ** 2).sum()
    grad_alpha, grad_mixed = torch.autograd.grad(loss, [alpha, mixed])
    estimate = torch.stack([p[o] * (grad_mixed * (outputs[o] - mixed)).sum() for o in range(4)])
    assert torch.allclose(grad_alpha, estimate.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("star", [False, True])
def test_strength_is_the_mean_absolute_task_gradient(problem, star):
    space, model, low, high = problem
    # a budget below the range: the latency hinge is active and moves α, but must not enter the strength
    strategy = DartsStrategy(SearchProblem(space, model, low * 0.5, seed=0),
                             {**PROXY, "select": "ostr", "ostr_star": star, "latency_weight": 5.0})
    optimizer = torch.optim.SGD(strategy.weight_parameters(), lr=0.01, momentum=0.9)
    strategy.start_epoch(1, 3, warmup=False)
    expected = {g: torch.zeros_like(a, dtype=torch.float64) for g, a in strategy.alphas.items()}
    data = batches(3)
    for step, (x, y) in enumerate(data):
        weights = strategy.relaxed("arch")
        loss = F.cross_entropy(strategy.supernet(strategy.proxy_input(x), weights), y)
        grads = torch.autograd.grad(loss, list(strategy.alphas.values()))
        for (group, p), g in zip(weights.items(), grads):
            value = g.abs().double() / (p.detach().double() if star else 1.0)
            expected[group] += value / len(data)
        for alpha in strategy.alphas.values():
            alpha.grad = None
        strategy.arch_backward(x, y, StepContext((x, y), optimizer, 0.01, 1, step))
        assert not torch.allclose(strategy.alphas["normal"].grad, grads[0])  # the latency term is in α's step
    strength = strategy.strength.strength()
    assert strategy.strength.count == 3
    for group in expected:
        assert torch.allclose(strength[group], expected[group], rtol=1e-5, atol=1e-12)


def test_ostr_selects_the_largest_strength_per_edge(problem):
    space, model, low, high = problem
    strategy = DartsStrategy(SearchProblem(space, model, high, seed=1), {**PROXY, "select": "ostr"})
    optimizer = torch.optim.SGD(strategy.weight_parameters(), lr=0.01)
    strategy.start_epoch(1, 2, warmup=False)
    for step, (x, y) in enumerate(batches(2)):
        strategy.arch_backward(x, y, StepContext((x, y), optimizer, 0.01, 1, step))
    derivation = strategy.derive()
    assert derivation.detail["select"] == "ostr" and not derivation.repaired
    assert derivation.arch.genotype == select_genotype(strategy.search_space, strategy.strength.strength())
    magnitude = DartsStrategy(SearchProblem(space, model, high, seed=1), {**PROXY, "select": "magnitude"})
    assert magnitude.derive().detail["select"] == "magnitude"


def test_operation_strength_accumulator_and_reset():
    acc = OperationStrength()
    acc.add({"normal": torch.tensor([[1.0, -3.0]])})
    acc.add({"normal": torch.tensor([[-2.0, 1.0]])})
    assert acc.strength()["normal"].tolist() == [[1.5, 2.0]]
    star = OperationStrength(star=True)
    star.add({"normal": torch.tensor([[1.0, -3.0]])}, {"normal": torch.tensor([[0.5, 0.25]])})
    assert star.strength()["normal"].tolist() == [[2.0, 12.0]]
    acc.reset()
    assert acc.count == 0 and acc.strength() == {}


def test_early_stop_after_k_unchanged_epochs(problem):
    stability = SelectionStability(patience=2)
    assert not stability.update(0, "a")
    assert not stability.update(1, "a")
    assert not stability.update(1, "a")  # the same epoch again counts once
    assert stability.update(2, "a")
    assert not stability.update(3, "b")
    assert not SelectionStability(0).update(5, "a")  # patience 0: never
    space, model, low, high = problem
    strategy = DartsStrategy(SearchProblem(space, model, high, seed=0), {**PROXY, "early_stop": 1})
    for epoch in (1, 2):  # no architecture step in between: the selected cells stay the same
        strategy.start_epoch(epoch, 5, warmup=False)
        strategy.status()
    assert strategy.should_stop()
