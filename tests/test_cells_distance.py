"""D-DARTS' architecture distance M (thesis Eqs. 4.6-4.8, Algorithm 3): hand-computed values and metric axioms."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.cells import CellGenotype, Genotype, get_cell_space
from hwnas.cells.distance import OPERATION_SCORES, architecture_distance, cell_distance, hamming
from hwnas.errors import ConfigError


def test_weighted_hamming_is_the_mean_of_the_differing_weights():
    # Algorithm 3: dist[i] = W[i] where U[i] != V[i], else 0; return mean(dist)
    assert hamming([1, 0, 0, 1], [0, 0, 1, 1], [0.5, 0.2, 0.3, 0.9]) == pytest.approx((0.5 + 0.3) / 4)
    assert hamming([1, 1], [1, 1], [0.4, 0.6]) == 0.0


def test_cell_distance_by_hand_on_nas_bench_201():
    space = get_cell_space("nb201")
    ops = [p for p in space.primitives if p != "none"]  # skip, nor_conv_1x1, nor_conv_3x3, avg_pool (4 bits)
    a = CellGenotype.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                           "skip_connect~2|")
    b = CellGenotype.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
                           "none~2|")
    # edge (1, 0): 3x3 vs 1x1 differ in two bits; edge (2, 2): skip vs nothing differs in one bit.
    w = {op: OPERATION_SCORES[op] / 100 for op in ops}
    edge_10 = (w["nor_conv_3x3"] + w["nor_conv_1x1"]) / len(ops)
    edge_22 = w["skip_connect"] / len(ops)
    assert cell_distance(a, b, space) == pytest.approx(max(edge_10, edge_22))  # Hausdorff: the worst edge
    assert cell_distance(a, a, space) == 0.0


def test_architecture_distance_is_the_mean_over_cells():
    space = get_cell_space("darts")
    rng = random.Random(0)
    a, b = space.sample(rng), space.sample(rng)
    expected = sum(cell_distance(a.genotype[n], b.genotype[n], space) for n in ("normal", "reduce")) / 2
    assert architecture_distance(a, b) == pytest.approx(expected)
    with pytest.raises(ConfigError, match="spaces"):
        architecture_distance(a, get_cell_space("nb201").sample(rng))


def _canonical(genotype: Genotype) -> tuple:
    return tuple((name, tuple(tuple(sorted(node, key=lambda e: e[1])) for node in cell.nodes))
                 for name, cell in genotype.cells)


@pytest.mark.parametrize("name", ["darts", "nb201", "dartopti"])
@settings(max_examples=40, deadline=None)
@given(seeds=st.tuples(st.integers(0, 2**31), st.integers(0, 2**31), st.integers(0, 2**31)))
def test_metric_axioms_on_random_genotypes(name, seeds):
    space = get_cell_space(name)
    x, y, z = (space.sample(random.Random(s)) for s in seeds)
    d = architecture_distance
    assert d(x, x) == 0.0
    assert (d(x, y) == 0.0) == (_canonical(x.genotype) == _canonical(y.genotype))  # identity of indiscernibles
    assert d(x, y) == pytest.approx(d(y, x))  # symmetry
    assert d(x, y) <= d(x, z) + d(z, y) + 1e-12  # triangle inequality
    assert 0.0 <= d(x, y) <= 1.0


def test_per_cell_genotypes_compare_position_by_position():
    space = get_cell_space("darts").with_network(4, 8).with_per_cell()
    rng = random.Random(2)
    a, b = space.sample(rng), space.sample(rng)
    cells = [f"c{i}" for i in range(8)]
    assert architecture_distance(a, b) == pytest.approx(
        sum(cell_distance(a.genotype[c], b.genotype[c], space) for c in cells) / 8)
