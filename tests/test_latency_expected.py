"""Each method's expected latency equals the Monte-Carlo mean of LatencyModel.predict over sampled architectures."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hwnas.budget.costs import (
    chain_cost,
    dense_cost,
    densenas_chained_cost,
    depth_stages,
    fbnet_latency,
    hardcore_expected_latency,
    proxyless_expected_latency,
)
from hwnas.spaces.dense import DenseChoice
from tests.search_helpers import measured_model, tiny_chain, tiny_dense

SAMPLES = 3000


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "search"
    folder.mkdir(exist_ok=True)
    chain, dense = tiny_chain(folder), tiny_dense()
    return chain, dense, measured_model(folder / "cpu.csv", chain, dense)


def _check(expected: float, samples: list[float]) -> None:
    values = np.asarray(samples)
    stderr = values.std(ddof=1) / np.sqrt(len(values))
    assert abs(values.mean() - expected) <= 4 * stderr + 1e-9, (expected, values.mean(), stderr)
    assert values.std() > 0  # the distribution really varies, so the check has teeth


def _categorical(rng: np.random.Generator, probs: torch.Tensor) -> int:
    p = probs.detach().double().numpy()
    return int(rng.choice(len(p), p=p / p.sum()))


@pytest.mark.parametrize("formula", [fbnet_latency, proxyless_expected_latency])
def test_chain_expectation_matches_monte_carlo(setup, formula):
    space, _, model = setup
    generator = torch.Generator().manual_seed(1)
    probs = [F.softmax(2 * torch.randn(len(p.candidates), generator=generator), -1) for p in space.positions]
    expected = float(formula(probs, chain_cost(space, model)))
    rng = np.random.default_rng(0)
    samples = [model.predict(space.arch([_categorical(rng, p) for p in probs])) for _ in range(SAMPLES)]
    _check(expected, samples)


def test_fbnet_latency_of_one_hot_masks_is_the_prediction(setup):
    space, _, model = setup
    cost = chain_cost(space, model)
    choices = [len(p.candidates) - 1 for p in space.positions]
    masks = [F.one_hot(torch.tensor(c), len(p.candidates)).double() for c, p in zip(choices, space.positions)]
    assert float(fbnet_latency(masks, cost)) == pytest.approx(model.predict(space.arch(choices)), rel=1e-9)


def test_hardcore_bilinear_latency_matches_monte_carlo(setup):
    space, _, model = setup
    stages = depth_stages(space)
    assert stages, "the tiny space searches depth in its first stage"
    generator = torch.Generator().manual_seed(2)
    optional = {pos for st in stages.values() for pos in st.positions[st.min_depth:]}
    alpha = []
    for p in space.positions:
        logits = 2 * torch.randn(len(p.candidates), generator=generator)
        if p.index in optional:
            logits[p.skip_index] = -float("inf")
        alpha.append(F.softmax(logits, -1))
    beta = {s: F.softmax(2 * torch.randn(len(st.depths), generator=generator), -1) for s, st in stages.items()}
    skip = [p.skip_index for p in space.positions]
    expected = float(hardcore_expected_latency(alpha, beta, stages, skip, chain_cost(space, model)))
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(SAMPLES):
        choices = [_categorical(rng, a) for a in alpha]
        for s, stage in stages.items():
            depth = stage.depths[_categorical(rng, beta[s])]
            for block, pos in enumerate(stage.positions, start=1):
                if block > depth:
                    choices[pos] = skip[pos]
        samples.append(model.predict(space.arch(choices)))
    _check(expected, samples)


def test_densenas_chained_cost_matches_monte_carlo(setup):
    _, space, model = setup
    cost = dense_cost(space, model)
    generator = torch.Generator().manual_seed(3)
    route = [F.softmax(2 * torch.randn(len(space.out_edges(n)), generator=generator), -1)
             for n in range(space.num_nodes - 1)]
    edge_probs = torch.zeros(len(space.edges))
    for node, probs in enumerate(route):
        for edge, p in zip(space.out_edges(node), probs):
            edge_probs[edge.index] = p
    edge_ops = [F.softmax(2 * torch.randn(len(e.candidates), generator=generator), -1) for e in space.edges]
    layer_ops = [[F.softmax(2 * torch.randn(len(space.layer_specs[n]), generator=generator), -1)
                  for _ in range(b.layers)] for n, b in enumerate(space.blocks)]
    expected = float(densenas_chained_cost(edge_probs, edge_ops, layer_ops, cost))
    rng = np.random.default_rng(2)
    samples = []
    for _ in range(SAMPLES):
        path, node = [0], 0
        while node != space.num_nodes - 1:
            node = space.out_edges(node)[_categorical(rng, route[node])].dst
            path.append(node)
        edges = tuple(_categorical(rng, edge_ops[space.edge(a, b).index]) for a, b in zip(path, path[1:]))
        layers = tuple(tuple(_categorical(rng, w) for w in layer_ops[n - 1]) for n in path[1:-1])
        samples.append(model.predict(space.arch(DenseChoice(tuple(path), edges, layers))))
    _check(expected, samples)


def test_range_is_fastest_and_slowest_architecture(setup):
    space, dense, model = setup
    for cost, sampled in ((chain_cost(space, model), space), (dense_cost(dense, model), dense)):
        low, high = cost.range_ms
        predictions = [model.predict(sampled.sample(random.Random(i))) for i in range(300)]
        assert low * (1 - 1e-9) <= min(predictions) and max(predictions) <= high * (1 + 1e-9)
        assert min(predictions) < max(predictions)
