"""Block specs: the grammar, keys, LUT rows and builds of every block every space can contain."""

import pytest
import torch

from hwnas.blocks import BlockSpec, BlockStringError, Op, parse_block_string
from hwnas.spaces.catalog import SPACES, get_space


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_spec_round_trips_through_key_and_row(name):
    for spec in get_space(name, 64).specs():
        assert BlockSpec.from_key(spec.key) == spec
        assert BlockSpec.from_row(spec.to_row()) == spec


@pytest.mark.parametrize("name", sorted(SPACES))
def test_every_candidate_builds_to_its_declared_output_shape(name):
    space = get_space(name, 32)
    for spec in space.specs():
        out = spec.build().eval()(torch.randn(1, *spec.input_shape))
        expected = (spec.cout,) if spec.op.kind == "fc" else spec.out_shape
        assert tuple(out.shape[1:]) == expected, spec.key


def test_key_names_every_attribute_explicitly():
    spec = BlockSpec(Op.parse("ir_k5_e6_se0.25_nhs"), 24, 40, 56, 56, 2)
    assert spec.key == "ir_k5_e6_se0.25_nhs:s2:24x56x56>40"
    # the default activation is spelled out in keys, so two networks with different defaults never share rows
    assert BlockSpec(Op.parse("ir_k3_e6", default_act="relu"), 8, 8, 8, 8).key.startswith("ir_k3_e6_nre:")


@pytest.mark.parametrize("text, message", [
    ("xx_k3", "unknown block type 'xx'"),
    ("ir_k3", "needs expansion"),
    ("ir_k3_e6_h100", "does not take hidden"),
    ("ir_kx_e6", "bad value in field 'kx'"),
    ("ir_k3_e6_nzz", "bad value in field 'nzz'"),
    ("ir_k3_e6_q4", "cannot read field 'q4'"),
])
def test_bad_block_strings_say_what_is_wrong(text, message):
    with pytest.raises(BlockStringError, match=message):
        parse_block_string(text)


def test_bad_key_names_the_expected_form():
    with pytest.raises(BlockStringError, match="not a block key"):
        BlockSpec.from_key("ir_k3_e6:24x56x56")


def test_skip_is_identity_only_when_shapes_match():
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(BlockSpec(Op.parse("skip"), 16, 16, 8, 8).build()(x), x)
    assert BlockSpec(Op.parse("skip"), 16, 24, 8, 8, 2).build().eval()(x).shape == (2, 24, 4, 4)
