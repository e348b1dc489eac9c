"""Published reference networks: grammar round trips, builds, parameter counts, search-space membership."""

import json

import pytest
import torch

from hwnas.arch import Arch
from hwnas.errors import ConfigError
from hwnas.spaces.catalog import get_space
from hwnas.spaces.published import PUBLISHED, get_published, published_in_space

torch.set_num_threads(1)
NAMES = sorted(PUBLISHED)

# Published parameter counts (millions, 1000 classes) and where each was read. Ours must lie within 5%.
PARAMS_M = {
    "mobilenetv2": 3.4,  # Sandler et al. 2018, Table 4 (torchvision mobilenet_v2 num_params 3,504,872 = ours)
    "mnasnet_a1": 3.9,  # Tan et al. 2019, Table 1 (timm mnasnet_a1: 3.89M)
    "fbnet_a": 4.3,  # Wu et al. 2019, Table 2
    "fbnet_b": 4.5,  # Wu et al. 2019, Table 2; see FBNET_B_MISS
    "fbnet_c": 5.5,  # Wu et al. 2019, Table 2 (timm fbnetc_100: 5.57M)
    "proxyless_mobile": 4.08,  # mit-han-lab/proxylessnas logs/imagenet_mobile_log.txt, "Total training params"
    "proxyless_cpu": 4.36,  # logs/imagenet_cpu_log.txt
    "proxyless_gpu": 7.12,  # logs/imagenet_gpu_log.txt
    "hardcorenas_c": 5.5,  # HF model card timm/hardcorenas_c.miil_green_in1k, "Params (M)"
    "hardcorenas_d": 7.5,  # HF model card timm/hardcorenas_d.miil_green_in1k
    # Estimated from the fp32 safetensors size on HF (21.1 / 32.5 / 33.0 MB over 4 bytes, less BN buffers);
    # no count was found for hardcorenas_b, which is left unchecked.
    "hardcorenas_a": 5.25,
    "hardcorenas_e": 8.09,
    "hardcorenas_f": 8.21,
}
FBNET_B_MISS = ("mobile-vision's fbnet_b gives 4.86M here (+8% on the paper's 4.5M); a reading of the paper's "
                "Figure 4 with k5_e1 at layer 10 gives 4.81M, so the paper's count is not reproduced by either")

# Points of our declared spaces today. FBNet-A's head conv is 1504 wide (the space's is 1984); the released
# ProxylessNAS nets widen the space's stages (Mobile: 32 channels after the stem block where the space has 24).
EXPECTED_IN = {"fbnet": {"fbnet_b", "fbnet_c"}, "proxyless": set()}
SEARCHABLE_IN = {"fbnet": {"fbnet_a", "fbnet_b", "fbnet_c"}, "hardcore": {n for n in NAMES if "hardcore" in n}}


@pytest.mark.parametrize("name", NAMES)
def test_string_and_json_round_trip(name):
    arch = Arch.parse(PUBLISHED[name])
    assert arch.to_string() == PUBLISHED[name]
    assert Arch.from_json(json.loads(json.dumps(arch.to_json()))) == arch
    assert get_published(name) == arch and arch.resolution == 224 and arch.num_classes == 1000


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_forwards_at_64px(name):
    arch = get_published(name, resolution=64)
    model = arch.build().eval()
    with torch.no_grad():
        assert model(torch.randn(arch.input_shape)).shape == (1, 1000)


@pytest.mark.parametrize("name", sorted(PARAMS_M))
def test_parameter_count_matches_publication(name, request):
    if name == "fbnet_b":
        request.applymarker(pytest.mark.xfail(reason=FBNET_B_MISS, strict=True))
    count = sum(p.numel() for p in get_published(name).build().parameters()) / 1e6
    assert count == pytest.approx(PARAMS_M[name], rel=0.05)


def test_other_class_count_replaces_only_the_classifier():
    arch = get_published("fbnet_c", resolution=96, num_classes=10)
    assert arch.num_classes == 10 and arch.resolution == 96
    assert arch.layers[:-1] == get_published("fbnet_c").layers[:-1]


@pytest.mark.parametrize("space", sorted(EXPECTED_IN))
def test_points_of_declared_spaces(space):
    assert set(published_in_space(get_space(space))) == EXPECTED_IN[space]


@pytest.mark.parametrize("space", sorted(SEARCHABLE_IN))
def test_searchable_blocks_are_candidates(space):
    for name in SEARCHABLE_IN[space]:
        get_space(space).choices_of(get_published(name))  # raises ConfigError when a block is no candidate


def test_hardcorenas_are_points_of_hardcore_space():
    assert {n for n in NAMES if "hardcore" in n} <= set(published_in_space(get_space("hardcore")))


def test_unknown_name_is_a_one_line_config_error():
    with pytest.raises(ConfigError, match=r"unknown published network 'fbnet_z' \(known: .*fbnet_c.*\)") as info:
        get_published("fbnet_z")
    assert "\n" not in str(info.value)
