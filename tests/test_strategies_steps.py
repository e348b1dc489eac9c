"""Strategy steps on a tiny space: the rules each method's update must obey."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.budget.costs import space_range_ms
from hwnas.data import load_splits
from hwnas.errors import ConfigError
from hwnas.strategies import SearchProblem, StepContext, make_strategy
from tests.search_helpers import RESOLUTION, measured_model, tiny_chain, tiny_dense


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "search"
    folder.mkdir(exist_ok=True)
    space = tiny_chain(folder)
    model = measured_model(folder / "cpu.csv", space, tiny_dense())
    batch = load_splits("digits", RESOLUTION, ("train_arch",), limit=16)["train_arch"].batch(range(16))
    return space, model, batch


def _strategy(setup, name, share=0.5, **params):
    space, model, _ = setup
    if name == "densenas":
        space = tiny_dense()
    low, high = space_range_ms(space, model)
    strategy = make_strategy(name, SearchProblem(space, model, low + share * (high - low), seed=3), params)
    strategy.start_epoch(1, 3, warmup=False)
    return strategy


def _arch_step(strategy, batch):
    for p in strategy.arch_parameters():
        p.grad = None
    ctx = StepContext(batch, torch.optim.SGD(strategy.weight_parameters(), lr=0.1), 0.1, 1, 0)
    metrics = strategy.arch_backward(*batch, ctx)
    strategy.arch_update()
    return metrics


def test_proxyless_keeps_unsampled_paths(setup):
    strategy = _strategy(setup, "proxyless", lam=0.0, budget_control="fixed")
    before = [F.softmax(t.detach(), -1).clone() for t in strategy.logits]
    _arch_step(strategy, setup[2])
    changed = 0
    for theta, old, sampled in zip(strategy.logits, before, strategy._sampled):
        new = F.softmax(theta.detach(), -1)
        others = [i for i in range(len(new)) if i not in sampled]
        assert torch.allclose(new[others], old[others], atol=1e-6)
        assert new[sampled].sum() == pytest.approx(float(old[sampled].sum()), abs=1e-6)
        changed += int(not torch.allclose(new, old))
    assert changed > 0


def test_hardcore_frank_wolfe_keeps_the_constraint(setup):
    strategy = _strategy(setup, "hardcore", share=0.05)  # the uniform point is over budget: start is projected
    assert strategy.expected_latency_ms() <= strategy.problem.budget_ms
    for _ in range(6):
        _arch_step(strategy, setup[2])
        assert strategy.expected_latency_ms() <= strategy.problem.budget_ms * (1 + 1e-6)
        for a, allowed in zip(strategy.alpha, strategy.allowed):
            assert float(a.detach().sum()) == pytest.approx(1.0) and float(a.detach().min()) >= -1e-9
            assert float(a.detach()[~torch.from_numpy(allowed)].abs().sum()) == 0.0
        for b in strategy.beta:
            assert float(b.detach().sum()) == pytest.approx(1.0)
    assert strategy.k == 6


def test_hardcore_gradient_is_the_mean_over_architecture_samples(setup):
    x, y = setup[2]
    averaged, single = _strategy(setup, "hardcore", samples=3), _strategy(setup, "hardcore", samples=1)
    single.supernet.load_state_dict(averaged.supernet.state_dict())
    single.generator.set_state(averaged.generator.get_state())
    ctx = StepContext(setup[2], torch.optim.SGD(averaged.weight_parameters(), lr=0.1), 0.1, 1, 0)
    averaged.arch_backward(x, y, ctx)
    expected = [torch.zeros_like(p) for p in single.arch_parameters()]
    for _ in range(3):  # the same generator, so the same three architectures one after another
        single.arch_backward(x, y, ctx)
        expected = [e + p.grad / 3 for e, p in zip(expected, single.arch_parameters())]
    assert any(float(e.abs().sum()) > 0 for e in expected)
    for e, p in zip(expected, averaged.arch_parameters()):
        assert torch.allclose(p.grad, e, atol=1e-10)
    with pytest.raises(ConfigError, match="samples >= 1"):
        _strategy(setup, "hardcore", samples=0)


def test_fbnet_schedule_and_dual_control(setup):
    strategy = _strategy(setup, "fbnet", share=0.05, hard=True, tau_end=0, budget_control="dual")
    strategy.start_epoch(4, 6, warmup=False)
    assert strategy.tau == pytest.approx(5.0 * 0.956 ** 4)  # the paper's factor per epoch
    ending = _strategy(setup, "fbnet", share=0.05)
    for epoch, tau in ((0, 5.0), (5, 0.1)):  # the default tau_end: the last epoch reaches it, whatever the count
        ending.start_epoch(epoch, 6, warmup=False)
        assert ending.tau == pytest.approx(tau)
    beta = strategy.control.value
    _arch_step(strategy, setup[2])
    assert strategy.control.value > beta  # expected latency above a 5% budget: the latency weight grows
    fixed = _strategy(setup, "fbnet", share=0.05, hard=True, budget_control="fixed")
    _arch_step(fixed, setup[2])
    assert fixed.control.value == 0.6


@pytest.mark.parametrize("name", ["fbnet", "proxyless"])
def test_argmax_control_answers_to_the_argmax_network(setup, name):
    """A nearly flat distribution leaning to each layer's slowest block: E[LAT] is under a budget the argmax exceeds,
    so 'dual' lowers the latency weight and 'argmax' raises it."""
    space, model, _ = setup
    low, high = space_range_ms(space, model)
    probe = _strategy(setup, name)
    with torch.no_grad():
        for theta, times in zip(probe.logits, probe.cost.candidates_ms):
            theta.zero_()[int(times.argmax())] = 0.01
    expected, argmax_ms = probe.expected_latency_ms(), probe.cost.of_choices(probe.argmax_choices())
    assert expected < argmax_ms
    share = ((expected + argmax_ms) / 2 - low) / (high - low)
    moved = {}
    for control in ("dual", "argmax"):
        strategy = _strategy(setup, name, share=share, budget_control=control)
        with torch.no_grad():
            for theta, leaning in zip(strategy.logits, probe.logits):
                theta.copy_(leaning)
        before = strategy.control.value
        strategy.update_control()
        moved[control] = strategy.control.value - before
    assert moved["dual"] < 0 < moved["argmax"]


def test_densenas_step_moves_routing(setup):
    strategy = _strategy(setup, "densenas", share=0.1)
    before = [b.detach().clone() for b in strategy.beta]
    expected = strategy.expected_latency_ms()
    metrics = _arch_step(strategy, setup[2])
    assert metrics["sampled_ms"] == pytest.approx(expected)  # the chained cost the step's loss used
    assert any(not torch.equal(a, b.detach()) for a, b in zip(before, strategy.beta))


@pytest.mark.parametrize("name", ["fbnet", "proxyless", "hardcore", "densenas"])
def test_state_round_trip(setup, name):
    strategy = _strategy(setup, name)
    _arch_step(strategy, setup[2])
    state = strategy.state_dict()
    copy = _strategy(setup, name)
    copy.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(strategy.arch_parameters(), copy.arch_parameters()))
    assert torch.equal(strategy.generator.get_state(), copy.generator.get_state())
    assert strategy.derive().arch == copy.derive().arch


def test_loss_change_is_exact_for_a_loss_linear_in_the_masks():
    from hwnas.strategies.fbnet import LossChange

    generator = torch.Generator().manual_seed(0)
    values = [torch.randn(n, generator=generator, dtype=torch.float64) for n in (3, 4)]
    masks = [F.softmax(torch.randn(n, generator=generator, dtype=torch.float64), 0).requires_grad_(True)
             for n in (3, 4)]
    loss = sum((m * v).sum() for m, v in zip(masks, values))
    change = LossChange(2)
    change.add(masks, torch.autograd.grad(loss, masks))
    for position, (m, v) in enumerate(zip(masks, values)):
        for c in range(len(m)):  # keep only candidate c at this position, the other position as it was
            assert change.mean()[position][c] == pytest.approx(float(v[c] - (m.detach() * v).sum()))


def test_fbnet_loss_selection_derives_from_the_measured_loss_change(setup):
    strategy = _strategy(setup, "fbnet", scores="loss")
    _arch_step(strategy, setup[2])
    _arch_step(strategy, setup[2])
    assert strategy.loss_change.count == 2
    scores = strategy.derivation_scores()
    assert all(abs(float(s.sum())) > 0 for s in scores)
    assert [len(s) for s in scores] == [len(t) for t in strategy.logits]
    state = strategy.state_dict()
    restored = _strategy(setup, "fbnet", scores="loss")
    restored.load_state_dict(state)
    assert all(np.allclose(a, b) for a, b in zip(restored.derivation_scores(), scores))
    assert restored.derive().arch.to_string() == strategy.derive().arch.to_string()
    with pytest.raises(ConfigError, match="scores=loss"):
        _strategy(setup, "fbnet", scores="loss", hard=True)


@pytest.mark.parametrize("name, params", [("fbnet", {}), ("proxyless", {}), ("hardcore", {"momentum": 0.5}),
                                          ("densenas", {})])
def test_strategy_state_reads_back_as_data_only(setup, tmp_path, name, params):
    """A checkpoint is read with weights_only (no code from a file): every strategy's state must be tensors and plain
    values, also after a step has filled its buffers (HardCoRe's momentum)."""
    strategy = _strategy(setup, name, **params)
    for _ in range(2):
        _arch_step(strategy, setup[2])
    torch.save(strategy.state_dict(), tmp_path / "state.pt")
    again = _strategy(setup, name, **params)
    again.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    for mine, theirs in zip(strategy.arch_parameters(), again.arch_parameters()):
        assert torch.equal(mine, theirs)
