"""Cell genotypes and networks: string/JSON round trips, the DARTS repr, checks, builds, specs and ONNX export."""

import json
import random

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.blocks import BlockSpec
from hwnas.cells import CELL_SPACES, CellArch, CellGenotype, Genotype, get_cell_space, published_cell_archs
from hwnas.cells.grow import grow_genotype, grow_indices
from hwnas.errors import ConfigError

torch.set_num_threads(1)
NAMES = sorted(CELL_SPACES)

# DARTS V2, as published in the DARTS code base (genotypes.py), in its namedtuple repr.
DARTS_V2 = ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
            "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
            "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
            "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
            "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])")


def small(name: str):
    return get_cell_space(name, 16, 10).with_network(4, 3 if name != "nb201" else 3)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_genotypes_round_trip(name, seed):
    space = get_cell_space(name)
    arch = space.sample(random.Random(seed))
    text = arch.to_string()
    assert CellArch.parse(text) == arch
    assert CellArch.parse(text).to_string() == text
    assert CellArch.from_json(json.loads(json.dumps(arch.to_json()))) == arch
    assert Genotype.parse(arch.genotype.to_string()) == arch.genotype
    assert Genotype.from_json({"cells": arch.to_json()["cells"]}) == arch.genotype
    for _, cell in arch.genotype.cells:
        assert CellGenotype.parse(str(cell)) == cell


def test_nb201_string_is_the_benchmarks_own():
    text = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    cell = CellGenotype.parse(text)
    assert cell.to_string() == text
    assert cell.nodes[2] == (("skip_connect", 0), ("nor_conv_3x3", 1), ("skip_connect", 2))
    get_cell_space("nb201").arch(Genotype((("cell", cell),)))  # a valid NAS-Bench-201 architecture


def test_darts_repr_is_read_without_eval():
    genotype = Genotype.parse(DARTS_V2)
    assert genotype.names == ("normal", "reduce")
    assert genotype["normal"].nodes[3] == (("skip_connect", 0), ("dil_conv_3x3", 2))
    assert genotype.count("skip_connect") == 5
    arch = get_cell_space("darts").arch(genotype)
    assert CellArch.parse(arch.to_string()).genotype == genotype
    published = dict(published_cell_archs(get_cell_space("darts")))
    assert published["darts_v2"] == arch and published["darts_v1"].genotype.count("skip_connect") == 6


@pytest.mark.parametrize("text, fragment", [
    ("normal=|sep_conv_3x3-0|", "OP~INPUT"),
    ("normal |sep_conv_3x3~0|", "NAME=CELL"),
    ("", "empty genotype"),
])
def test_bad_genotype_strings_name_the_problem(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Genotype.parse(text)


def test_space_check_refuses_what_the_space_cannot_build():
    space = get_cell_space("darts")
    good = space.sample_genotype(random.Random(1))
    normal = good["normal"]
    cases = {
        "does not exist yet": Genotype((("normal", CellGenotype(((("sep_conv_3x3", 2),), *normal.nodes[1:]))),
                                        ("reduce", good["reduce"]))),
        "not an operation": Genotype((("normal", CellGenotype(((("conv_9x9", 0),), *normal.nodes[1:]))),
                                       ("reduce", good["reduce"]))),
        "do not match": Genotype((("normal", normal),)),
        "nodes": Genotype((("normal", CellGenotype(normal.nodes[:3])), ("reduce", good["reduce"]))),
    }
    for fragment, genotype in cases.items():
        with pytest.raises(ConfigError, match=fragment):
            space.arch(genotype)
    with pytest.raises(ConfigError, match="cells:SPACE"):
        CellArch.parse("cells:darts:32:normal=|sep_conv_3x3~0|")


@pytest.mark.parametrize("name", NAMES)
def test_specs_are_exactly_the_blocks_built(name):
    space = small(name)
    rng = random.Random(3)
    for _ in range(3):
        arch = space.sample(rng)
        specs = arch.specs()
        model = arch.build().eval()
        assert len(specs) == len(list(_block_modules(model)))
        for spec in specs:
            assert BlockSpec.from_key(spec.key) == spec  # every cell op is a registered block type with a key
        assert {s.key for s in specs} <= {s.key for s in space.specs()}
        with torch.no_grad():
            assert model(torch.randn(2, *arch.input_shape[1:])).shape == (2, 10)


def _block_modules(model):
    yield model.stem
    for index, cell in enumerate(model.cells):
        if str(index) in model.transitions:
            yield model.transitions[str(index)]
        yield from cell.preprocess
        yield from cell.ops
    yield from model.tail


def test_darts_network_shapes_follow_the_paper():
    space = get_cell_space("darts").with_network(16, 8)
    assert len(space.edges) == 14 and len(space.primitives) == 8
    assert [s.index for s in space.slots if s.reduction] == [2, 5]
    assert space.stem.cout == 48
    assert space.slots[-1].out_channels == 4 * 64 and space.slots[-1].size == 8
    assert space.size == pytest.approx((180 * 7 ** 8) ** 2)  # thesis Eq. 4.1: ~1e9 per cell, ~1e18 for two
    nb201 = get_cell_space("nb201")
    assert len(nb201.edges) == 6 and nb201.size == 5 ** 6 and len(nb201.transitions) == 2


def test_cell_network_exports_to_onnx_and_matches_pytorch(tmp_path):
    import onnxruntime

    from hwnas.onnx_io import export_onnx

    arch = small("darts").sample(random.Random(5))
    model = arch.build().eval()
    example = torch.randn(*arch.input_shape)
    path = export_onnx(model, example, tmp_path / "cell.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {session.get_inputs()[0].name: example.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, model(example).numpy(), rtol=1e-4, atol=1e-5)


def test_algorithm_2_keeps_reductions_and_repeats_each_segment():
    assert grow_indices(8, 14) == [0, 1, 0, 1, 2, 4, 3, 4, 3, 5, 6, 7, 6, 7]
    space = get_cell_space("darts").with_network(4, 8).with_per_cell()
    genotype = space.sample_genotype(random.Random(0))
    grown = grow_genotype(genotype, 14)
    assert grown.names == tuple(f"c{i}" for i in range(14))
    assert grown["c4"] == genotype["c2"] and grown["c9"] == genotype["c5"]  # reductions at n/3 and 2n/3
    big = get_cell_space("darts").with_network(4, 14).with_per_cell()
    assert [s.index for s in big.slots if s.reduction] == [4, 9]
    big.arch(grown)
    with pytest.raises(ConfigError):
        grow_indices(4, 14)
