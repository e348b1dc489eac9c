"""Architecture strings and search spaces: encode(decode(s)) == s, choices round-trip, sampling."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.arch import Arch
from hwnas.blocks import BlockStringError
from hwnas.errors import ConfigError
from hwnas.spaces.catalog import SPACES, get_space


@pytest.mark.parametrize("name", sorted(SPACES))
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_sampled_architectures_round_trip(name, seed):
    space = get_space(name)
    arch = space.sample(random.Random(seed))
    text = arch.to_string()
    assert Arch.parse(text).to_string() == text
    assert Arch.from_json(arch.to_json()) == arch
    assert space.arch(space.choices_of(Arch.parse(text))) == arch


@pytest.mark.parametrize("name", sorted(SPACES))
def test_space_specs_cover_every_sampled_architecture(name):
    space = get_space(name, 64)
    keys = {spec.key for spec in space.specs()}
    rng = random.Random(0)
    for _ in range(20):
        assert {spec.key for spec in space.sample(rng).specs()} <= keys


def test_fbnet_space_has_the_papers_shape():
    space = get_space("fbnet")
    assert len(space.positions) == 22
    assert all(len(p.candidates) == 9 for p in space.positions)
    assert space.positions[-1].cout == 352


def test_depth_search_drops_only_trailing_layers():
    space = get_space("hardcore")
    rng = random.Random(3)
    for _ in range(50):
        choices = space.sample_choices(rng)
        for positions in space.by_stage():
            kinds = [p.candidates[choices[p.index]].kind for p in positions]
            depth = kinds.index("skip") if "skip" in kinds else len(kinds)
            assert depth >= 2 and all(k == "skip" for k in kinds[depth:])


@pytest.mark.parametrize("text, message", [
    ("cn_k3_s2_c16", "RESOLUTION:ACTIVATION:ROW"),
    ("big:relu:cn_k3_c16", "not an input resolution"),
    ("224:gelu:cn_k3_c16", "not an activation"),
    ("224:relu:cn_k3", "needs its output channels"),
])
def test_bad_arch_strings_say_what_is_wrong(text, message):
    with pytest.raises(BlockStringError, match=message):
        Arch.parse(text)


def test_architecture_outside_space_is_refused():
    arch = Arch.parse("64:relu:cn_k3_s2_c16,ir_k7_e6_c16,fc_c10")
    with pytest.raises(ConfigError, match="searchable blocks"):
        get_space("fbnet").choices_of(arch)


def test_unknown_space_lists_known_ones():
    with pytest.raises(ConfigError, match="known: "):
        get_space("nope")
