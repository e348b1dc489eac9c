"""Supernet layers and budget projection: mixed and masked layers compute what their candidates compute."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.blocks import BlockSpec, Op
from hwnas.budget.costs import ChainCost
from hwnas.budget.knapsack import repair
from hwnas.budget.projection import fill_to_floor, project_chain
from hwnas.lut.model import Calibration
from hwnas.supernet import ChainSupernet, MaskedInvertedResidual, MixedLayer, Selection, maskable
from hwnas.supernet.sampling import gumbel_softmax, sample_without_replacement
from tests.search_helpers import tiny_chain

TOKENS = ("ir_k3_e3", "ir_k5_e3", "ir_k3_e6", "ir_k5_e6", "skip")


def _specs(tokens=TOKENS, cin=16, cout=16, stride=1):
    return [BlockSpec(Op.parse(t), cin, cout, 8, 8, stride) for t in tokens]


def test_mixed_layer_paths():
    torch.manual_seed(0)
    layer = MixedLayer(_specs()).eval()
    x = torch.randn(2, 16, 8, 8)
    weights = torch.softmax(torch.randn(len(TOKENS)), 0)
    outputs = [c(x) for c in layer.candidates]
    assert torch.allclose(layer(x, weights), sum(w * o for w, o in zip(weights, outputs)), atol=1e-5)
    assert torch.allclose(layer(x, Selection.one(2, 5).weights, (2,)), outputs[2])
    per_sample = torch.softmax(torch.randn(2, len(TOKENS)), 1)
    expected = torch.stack([sum(per_sample[n, k] * outputs[k][n] for k in range(5)) for n in range(2)])
    assert torch.allclose(layer(x, per_sample), expected, atol=1e-5)


def _saved_bytes(run, *args):
    """run(*args) and the bytes autograd saves for its backward (parameters included; compared in pairs)."""
    sizes = {}

    def pack(tensor):
        sizes[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = run(*args)
    return result, sum(sizes.values())


def test_closed_gate_path_keeps_gradients_and_saves_only_its_output():
    """ProxylessNAS's closed gate (weight exactly 0): the same output and the same gradients for the input and the
    gates, with the closed path run without autograd (its parameters get no gradient, its internals are not kept)."""
    torch.manual_seed(0)
    layer = MixedLayer(_specs()).eval()
    x = torch.randn(2, 16, 8, 8)
    upstream = torch.randn(2, 16, 8, 8)
    results = []
    for closed in ((), (3,)):
        layer.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)
        gate = torch.tensor([1.0, 0.0], requires_grad=True)
        weights = torch.zeros(len(TOKENS)).index_copy(0, torch.tensor([1, 3]), gate)
        out, saved = _saved_bytes(layer, inputs, weights, (1, 3), closed)
        (out * upstream).sum().backward()
        results.append((out.detach(), inputs.grad, gate.grad, saved,
                        [p.grad for p in layer.candidates[3].parameters()]))
    (out_a, x_a, gate_a, saved_a, _), (out_b, x_b, gate_b, saved_b, closed_grads) = results
    assert torch.equal(out_a, out_b)
    assert torch.allclose(x_a, x_b, atol=1e-6)
    assert torch.allclose(gate_a, gate_b, atol=1e-5) and gate_b[1] != 0  # the closed gate still learns
    assert all(g is None for g in closed_grads)
    assert saved_b < saved_a


def test_masked_layer_sums_listed_paths_and_mixes_all():
    """Listed paths on shared weights: Σ w_k·o_k with each o_k the candidate alone (binary gates: the closed path's
    output in its gate's gradient); all paths: the marginal mixture of kernel and width (FBNetV2)."""
    torch.manual_seed(0)
    layer = MaskedInvertedResidual(_specs()).eval()
    x = torch.randn(2, 16, 8, 8)
    upstream = torch.randn(2, 16, 8, 8)
    paths = [layer(x, Selection.one(k, 5).weights, (k,)).detach() for k in (0, 3)]
    gate = torch.tensor([1.0, 0.0], requires_grad=True)
    weights = torch.zeros(5).index_copy(0, torch.tensor([0, 3]), gate)
    out = layer(x, weights, (0, 3), (3,))
    (out * upstream).sum().backward()
    assert torch.allclose(out, paths[0], atol=1e-6)
    expected_gate = torch.stack([(upstream * p).sum() for p in paths])
    assert torch.allclose(gate.grad, expected_gate, rtol=1e-4, atol=1e-4)
    half = torch.tensor([0.5, 0.0, 0.0, 0.5, 0.0])
    assert torch.allclose(layer(x, half, (0, 3)), 0.5 * (paths[0] + paths[1]), atol=1e-5)
    assert not torch.allclose(layer(x, half), 0.5 * (paths[0] + paths[1]), atol=1e-3)  # all paths: the mixture


@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_masked_layer_computes_the_chosen_candidate(index):
    """With one-hot weights the shared-weight layer equals the standalone block holding the matching slices."""
    torch.manual_seed(index)
    specs = _specs()
    masked = MaskedInvertedResidual(specs).eval()
    block = specs[index].build().eval()
    mid = block.expand[0].out_channels
    kernel = specs[index].op.kernel
    full = masked.superkernel.shape[-1]
    start = (full - kernel) // 2
    with torch.no_grad():
        block.expand[0].weight.copy_(masked.expand[0].weight[:mid])
        block.depthwise[0].weight.copy_(masked.superkernel[:mid, :, start:start + kernel, start:start + kernel])
        block.project[0].weight.copy_(masked.project[:, :mid])
    x = torch.randn(2, 16, 8, 8)
    weights = torch.zeros(len(specs))
    weights[index] = 1.0
    assert torch.allclose(masked(x, weights, (index,)), block(x), atol=1e-5)
    skip = torch.zeros(len(specs))
    skip[4] = 1.0
    assert torch.allclose(masked(x, skip, (4,)), x)


def test_maskable():
    assert maskable(_specs())
    assert not maskable(_specs(("ir_k3_e3", "ir_k3_e1_g2")))
    assert not maskable(_specs(("ir_k3_e3", "skip"), cout=24))


def test_chain_supernet_choices_match_the_architecture(tmp_path):
    space = tiny_chain(tmp_path)
    net = ChainSupernet(space).eval()
    choices = [len(p.candidates) - 1 for p in space.positions]
    arch_net = space.arch(choices).build().eval()
    net_blocks = [*net.stem, *(net.layers[i].candidates[c] for i, c in enumerate(choices)), *net.head]
    arch_net.load_state_dict({f"{i}.{k}": v for i, module in enumerate(net_blocks)
                              for k, v in module.state_dict().items()})
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(net.forward_choices(x, choices), arch_net(x), atol=1e-5)


def test_depth_mixing_is_the_weighted_sum_of_stage_outputs(tmp_path):
    space = tiny_chain(tmp_path)
    net = ChainSupernet(space).eval()
    selections = [Selection.one(0, len(p.candidates)) for p in space.positions]
    x = torch.randn(1, 3, 16, 16)
    one_hot = {0: torch.tensor([0.0, 0.0, 1.0])}  # depth 3 of the first stage: every block runs
    assert torch.allclose(net(x, selections, one_hot), net(x, selections), atol=1e-6)


def test_samplers_use_the_generator():
    logits = torch.randn(6)
    a, index_a = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(5), hard=True)
    b, index_b = gumbel_softmax(logits, 1.0, torch.Generator().manual_seed(5), hard=True)
    assert torch.equal(a, b) and index_a == index_b and a.sum() == pytest.approx(1.0)
    pair = sample_without_replacement(torch.softmax(logits, 0), 2, torch.Generator().manual_seed(1))
    assert len(set(pair)) == 2


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(2, 4), min_size=1, max_size=5), st.integers(0, 10_000), st.floats(0.0, 1.0))
def test_projection_meets_the_budget(sizes, seed, share):
    rng = np.random.default_rng(seed)
    times = [torch.tensor(rng.uniform(0.1, 2.0, n), dtype=torch.float64) for n in sizes]
    cost = ChainCost(0.5, tuple(times), Calibration(1.1, 0.05))
    scores = [np.log(rng.dirichlet(np.ones(n))) for n in sizes]
    low, high = cost.range_ms
    budget = low + share * (high - low)
    best = max(itertools.product(*[range(n) for n in sizes]),
               key=lambda c: sum(s[i] for s, i in zip(scores, c)) if cost.of_choices(c) <= budget else -np.inf)
    for method in ("lp", "greedy"):
        result = project_chain(scores, cost, budget, method)
        assert result.predicted_ms <= budget
        assert result.predicted_ms == pytest.approx(cost.of_choices(result.choices))
        if not result.method.repaired:
            assert list(result.choices) == [int(np.argmax(s)) for s in scores]
        score = sum(s[i] for s, i in zip(scores, result.choices))
        optimum = sum(s[i] for s, i in zip(scores, best))
        assert score <= optimum + 1e-9
        if method == "lp":  # LP rounding gives up at most one layer's score range against the optimum
            assert score >= optimum - max(float(s.max() - s.min()) for s in scores) - 1e-9


def test_fill_changes_two_layers_where_no_single_upgrade_fits():
    scores = [np.array([0.0, -1.0]), np.array([0.0, -0.1, -0.15])]
    lat = [np.array([0.0, 5.0]), np.array([0.0, 3.0, 6.0])]
    # one layer at a time: layer 1 to 6 ms (the cheapest per ms), after which layer 0's +5 ms overshoots 9
    assert fill_to_floor(scores, lat, [0, 0], 8.0, 9.0) == [1, 1]
    assert fill_to_floor(scores, lat, [0, 0], 6.0, 9.0) == [0, 2]


def test_repair_removes_the_excess_with_the_least_loss_not_the_fastest_option():
    # per millisecond saved the 1 ms option loses least, but only 1 ms is over, and the 9 ms option removes it
    # losing less score
    scores = [np.array([0.50, 0.49, 0.45])] * 2
    lat = [np.array([10.0, 9.0, 1.0])] * 2
    repaired = repair(scores, lat, [0, 0], 19.0)
    assert sorted(repaired) == [0, 1]


def test_repair_stays_in_the_band_where_a_swap_can():
    # removing the 1 ms excess: the 9 ms saving loses the least score but falls under the floor (15 ms); the 2 ms
    # one lands in the band
    scores = [np.array([0.50, 0.49, 0.495])] * 2
    lat = [np.array([10.0, 8.0, 1.0])] * 2
    assert sorted(repair(scores, lat, [0, 0], 19.0)) == [0, 2]
    assert sorted(repair(scores, lat, [0, 0], 19.0, low=15.0)) == [0, 1]


def test_fill_closes_the_gap_with_the_least_loss_not_the_slowest_option():
    # nearly equal scores (weights that barely moved): per millisecond the 10 ms option loses least, but 1 ms of
    # the gap is missing, and the 2 ms option closes it losing less score
    scores = [np.array([0.50, 0.49, 0.48])] * 3
    lat = [np.array([1.0, 2.0, 10.0])] * 3
    filled = fill_to_floor(scores, lat, [0, 0, 0], 4.0, 40.0, pairs=False)
    assert sorted(filled) == [0, 0, 1]


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 5), st.integers(2, 5), st.integers(0, 10_000), st.floats(0.0, 1.0), st.floats(0.05, 0.5))
def test_fill_reaches_a_two_layer_band_whenever_one_is_there(size_a, size_b, seed, position, width):
    rng = np.random.default_rng(seed)
    lat = [rng.uniform(0.0, 2.0, size_a), rng.uniform(0.0, 2.0, size_b)]
    scores = [np.log(rng.dirichlet(np.ones(size_a))), np.log(rng.dirichlet(np.ones(size_b)))]
    sums = sorted(a + b for a in lat[0] for b in lat[1])
    low = sums[0] + position * (sums[-1] - sums[0])
    high = low + width
    start = [int(np.argmin(lat[0])), int(np.argmin(lat[1]))]
    filled = fill_to_floor(scores, lat, start, low, high)
    used = lat[0][filled[0]] + lat[1][filled[1]]
    assert used <= high
    assert (used >= low) == any(low <= total <= high for total in sums)


def test_dense_space_round_trip_and_supernet_paths():
    import random

    from hwnas.supernet.dense import DenseSupernet
    from tests.search_helpers import tiny_dense

    space = tiny_dense()
    net = DenseSupernet(space).eval()
    for seed in range(20):
        choice = space.sample_choice(random.Random(seed))
        arch = space.arch(choice)
        assert space.arch(space.choices_of(arch)) == arch  # (routes through equal-shaped blocks coincide)
        assert net.forward_choice(torch.randn(1, 3, 16, 16), choice).shape == (1, 10)


def test_batchnorm_recalibrated_fits_the_evaluated_network_then_restores():
    from hwnas.batchnorm import batchnorm_recalibrated

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    norm = model[1]
    norm.running_mean.fill_(5.0)
    norm.running_var.fill_(9.0)
    batches = [torch.randn(8, 3, 4, 4) * 2 + 1 for _ in range(3)]
    with torch.no_grad(), batchnorm_recalibrated(model, model, iter(batches), 2):
        assert not model.training
        features = [model[0](x) for x in batches[:2]]  # only `count` batches are used
        expected_mean = torch.stack([f.mean((0, 2, 3)) for f in features]).mean(0)
        expected_var = torch.stack([f.var((0, 2, 3)) for f in features]).mean(0)
        assert torch.allclose(norm.running_mean, expected_mean, atol=1e-5)
        assert torch.allclose(norm.running_var, expected_var, atol=1e-4)
    assert torch.all(norm.running_mean == 5.0) and torch.all(norm.running_var == 9.0) and norm.momentum == 0.1


def test_zero_init_starts_residual_candidates_as_the_identity():
    from hwnas.ops import zero_init_residual_branches

    torch.manual_seed(0)
    x = torch.randn(2, 16, 8, 8)
    residual = MixedLayer(_specs(("ir_k3_e3", "ir_k5_e6_se0.25", "ds_k3", "skip")))
    masked = MaskedInvertedResidual(_specs())
    strided = MixedLayer(_specs(("ir_k3_e3", "ds_k3"), cout=24, stride=2))
    before = [strided(x, Selection.one(k, 2).weights, (k,)) for k in range(2)]
    for module in (residual, masked, strided):
        zero_init_residual_branches(module)
    for k in range(4):
        assert torch.equal(residual(x, Selection.one(k, 4).weights, (k,)), x)
    for k in range(len(TOKENS)):
        assert torch.equal(masked(x, Selection.one(k, len(TOKENS)).weights, (k,)), x)
    for k in range(2):  # no residual: nothing to start as the identity, the block is left as it was
        assert torch.equal(strided(x, Selection.one(k, 2).weights, (k,)), before[k])
