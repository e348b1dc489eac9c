"""Published reference networks as data: one architecture string each, at 224x224 with 1000 classes.

Transcribed into our grammar (`hwnas.arch`) from each paper and its authors' (or timm's) definition:

- mobilenetv2: MobileNetV2-1.0, Sandler et al., CVPR 2018, Table 2 (torchvision/timm `mobilenet_v2`).
- mnasnet_a1: MnasNet-A1, Tan et al., CVPR 2019, Figure 7(a) (TF tpu `mnasnet-a1`, timm `_gen_mnasnet_a1`).
  MnasNet reduces its SE from the block's input width (0.25 * cin), ours from the expanded width, so `se` is
  written 0.25 / e (se0.0833333 at e3, se0.0416667 at e6); rounding to 8 turns widths 6/10/20/28 into 8/16/24/32.
- fbnet_a, fbnet_b, fbnet_c: Wu et al., CVPR 2019, Table 1 space, Figure 4 (facebookresearch/mobile-vision
  `fbnet_modeldef_cls_fbnet.py`, which keeps the skip layers; its FBNet-A head conv is 1504 wide, not 1984).
- proxyless_mobile, proxyless_cpu, proxyless_gpu: Cai et al., ICLR 2019, Figure 4 (mit-han-lab/proxylessnas
  `proxyless_{mobile,cpu,gpu}.config`, as in osmr/imgclsmob; a zero op beside a shortcut is written `skip`).
- hardcorenas_a ... hardcorenas_f: Nayman et al., NeurIPS 2021, the architecture strings of the
  Alibaba-MIIL/HardCoReNAS README (= timm `hardcorenas.py`; `mobilenasnet.py`: 32-wide stem, 1280-wide hidden
  classifier layer). A stage of fewer than 4 blocks is padded with `skip` rows, the hardcore space's encoding
  of a dropped layer (identity: no parameters, no compute).
"""

from __future__ import annotations

from hwnas.arch import Arch, Layer
from hwnas.errors import ConfigError
from hwnas.spaces.chain import Space

_HARDCORE_STEM = "224:hswish:cn_k3_s2_c32,ds_k3_c16_nre,"
_HARDCORE_HEAD = ",cn_k1_c960,fc_c1000_h1280"

PUBLISHED: dict[str, str] = {
    "mobilenetv2": (
        "224:relu6:cn_k3_s2_c32,ds_k3_c16,"
        "ir_r2_k3_s2_e6_c24,ir_r3_k3_s2_e6_c32,ir_r4_k3_s2_e6_c64,ir_r3_k3_e6_c96,ir_r3_k3_s2_e6_c160,"
        "ir_k3_e6_c320,cn_k1_c1280,fc_c1000"),
    "mnasnet_a1": (
        "224:relu:cn_k3_s2_c32,ds_k3_c16,"
        "ir_r2_k3_s2_e6_c24,ir_r3_k5_s2_e3_c40_se0.0833333,ir_r4_k3_s2_e6_c80,ir_r2_k3_e6_c112_se0.0416667,"
        "ir_r3_k5_s2_e6_c160_se0.0416667,ir_k3_e6_c320,cn_k1_c1280,fc_c1000"),
    "fbnet_a": (
        "224:relu:cn_k3_s2_c16,skip_c16,"
        "ir_k3_s2_e3_c24,ir_k3_e1_c24,skip_r2_c24,"
        "ir_k5_s2_e6_c32,ir_k3_e3_c32,ir_k5_e1_c32,ir_k3_e3_c32,"
        "ir_k5_s2_e6_c64,ir_k5_e3_c64,ir_k5_e1_c64_g2,ir_k5_e6_c64,"
        "ir_k3_e6_c112,ir_k5_e1_c112_g2,ir_k5_e3_c112,ir_k3_e1_c112_g2,"
        "ir_r2_k5_s2_e6_c184,ir_k5_e3_c184,ir_k5_e6_c184,"
        "ir_k5_e6_c352,cn_k1_c1504,fc_c1000"),
    "fbnet_b": (
        "224:relu:cn_k3_s2_c16,ir_k3_e1_c16,"
        "ir_k3_s2_e6_c24,ir_k5_e1_c24,ir_r2_k3_e1_c24,"
        "ir_k5_s2_e6_c32,ir_k5_e3_c32,ir_k3_e6_c32,ir_k5_e6_c32,"
        "ir_r2_k5_s2_e6_c64,skip_c64,ir_k5_e3_c64,"
        "ir_k5_e6_c112,ir_k3_e1_c112,ir_k5_e1_c112,ir_k5_e3_c112,"
        "ir_k5_s2_e6_c184,ir_k5_e1_c184,ir_r2_k5_e6_c184,"
        "ir_k3_e6_c352,cn_k1_c1984,fc_c1000"),
    "fbnet_c": (
        "224:relu:cn_k3_s2_c16,ir_k3_e1_c16,"
        "ir_k3_s2_e6_c24,skip_c24,ir_r2_k3_e1_c24,"
        "ir_k5_s2_e6_c32,ir_k5_e3_c32,ir_k5_e6_c32,ir_k3_e6_c32,"
        "ir_k5_s2_e6_c64,ir_k5_e3_c64,ir_r2_k5_e6_c64,"
        "ir_r3_k5_e6_c112,ir_k5_e3_c112,"
        "ir_r4_k5_s2_e6_c184,"
        "ir_k3_e6_c352,cn_k1_c1984,fc_c1000"),
    "proxyless_mobile": (
        "224:relu6:cn_k3_s2_c32,ds_k3_c16,"
        "ir_k5_s2_e3_c32,ir_k3_e3_c32,skip_r2_c32,"
        "ir_k7_s2_e3_c40,ir_k3_e3_c40,ir_r2_k5_e3_c40,"
        "ir_k7_s2_e6_c80,ir_r3_k5_e3_c80,"
        "ir_k5_e6_c96,ir_r3_k5_e3_c96,"
        "ir_r2_k7_s2_e6_c192,ir_r2_k7_e3_c192,"
        "ir_k7_e6_c320,cn_k1_c1280,fc_c1000"),
    "proxyless_cpu": (
        "224:relu6:cn_k3_s2_c40,ds_k3_c24,"
        "ir_k3_s2_e6_c32,ir_r3_k3_e3_c32,"
        "ir_k3_s2_e6_c48,ir_r2_k3_e3_c48,ir_k5_e3_c48,"
        "ir_k3_s2_e6_c88,skip_r2_c88,ir_k3_e3_c88,"
        "ir_k5_e6_c104,ir_r3_k3_e3_c104,"
        "ir_k5_s2_e6_c216,ir_r2_k5_e3_c216,ir_k3_e3_c216,"
        "ir_k5_e6_c360,cn_k1_c1432,fc_c1000"),
    "proxyless_gpu": (
        "224:relu6:cn_k3_s2_c40,ds_k3_c24,"
        "ir_k5_s2_e3_c32,skip_r3_c32,"
        "ir_k7_s2_e3_c56,skip_r2_c56,ir_k3_e3_c56,"
        "ir_k7_s2_e6_c112,skip_r2_c112,ir_k5_e3_c112,"
        "ir_k5_e6_c128,skip_c128,ir_k3_e3_c128,ir_k5_e3_c128,"
        "ir_r3_k7_s2_e6_c256,ir_k5_e6_c256,"
        "ir_k7_e6_c432,cn_k1_c1728,fc_c1000"),
    "hardcorenas_a": (
        _HARDCORE_STEM
        + "ir_k5_s2_e3_c24_nre,ir_k5_e3_c24_se0.25_nre,skip_r2_c24,"
        "ir_k5_s2_e3_c40_nre,ir_k5_e6_c40_se0.25_nre,skip_r2_c40,"
        "ir_r2_k5_s2_e6_c80_se0.25,skip_r2_c80,"
        "ir_r2_k5_e6_c112_se0.25,skip_r2_c112,"
        "ir_r2_k5_s2_e6_c192_se0.25,skip_r2_c192" + _HARDCORE_HEAD),
    "hardcorenas_b": (
        _HARDCORE_STEM
        + "ir_k5_s2_e3_c24_nre,ir_k5_e3_c24_se0.25_nre,ir_k3_e3_c24_nre,skip_c24,"
        "ir_k5_s2_e3_c40_nre,ir_r2_k5_e3_c40_nre,skip_c40,"
        "ir_r2_k5_s2_e3_c80,ir_r2_k3_e3_c80,"
        "ir_k5_e3_c112,ir_r3_k3_e3_c112,"
        "ir_r2_k5_s2_e6_c192_se0.25,ir_k3_e3_c192_se0.25,skip_c192" + _HARDCORE_HEAD),
    "hardcorenas_c": (
        _HARDCORE_STEM
        + "ir_k5_s2_e3_c24_nre,ir_k5_e3_c24_se0.25_nre,skip_r2_c24,"
        "ir_k5_s2_e3_c40_nre,ir_r3_k5_e3_c40_nre,"
        "ir_k5_s2_e4_c80,ir_k5_e6_c80_se0.25,ir_r2_k3_e3_c80,"
        "ir_k5_e6_c112_se0.25,ir_r3_k3_e3_c112,"
        "ir_r2_k5_s2_e6_c192_se0.25,ir_k3_e3_c192_se0.25,skip_c192" + _HARDCORE_HEAD),
    "hardcorenas_d": (
        _HARDCORE_STEM
        + "ir_r2_k5_s2_e3_c24_se0.25_nre,skip_r2_c24,"
        "ir_k5_s2_e3_c40_se0.25_nre,ir_k5_e4_c40_se0.25_nre,ir_k3_e3_c40_se0.25_nre,skip_c40,"
        "ir_k5_s2_e4_c80_se0.25,ir_r3_k3_e3_c80_se0.25,"
        "ir_k3_e4_c112_se0.25,ir_k5_e4_c112_se0.25,ir_k3_e3_c112_se0.25,ir_k5_e3_c112_se0.25,"
        "ir_r3_k5_s2_e6_c192_se0.25,ir_k3_e6_c192_se0.25" + _HARDCORE_HEAD),
    "hardcorenas_e": (
        _HARDCORE_STEM
        + "ir_r2_k5_s2_e3_c24_se0.25_nre,skip_r2_c24,"
        "ir_k5_s2_e6_c40_se0.25_nre,ir_r2_k5_e4_c40_se0.25_nre,ir_k3_e3_c40_se0.25_nre,"
        "ir_k5_s2_e4_c80_se0.25,ir_k3_e6_c80_se0.25,skip_r2_c80,"
        "ir_r3_k5_e6_c112_se0.25,ir_k5_e3_c112_se0.25,"
        "ir_r3_k5_s2_e6_c192_se0.25,ir_k3_e6_c192_se0.25" + _HARDCORE_HEAD),
    "hardcorenas_f": (
        _HARDCORE_STEM
        + "ir_r2_k5_s2_e3_c24_se0.25_nre,skip_r2_c24,"
        "ir_r2_k5_s2_e6_c40_se0.25_nre,skip_r2_c40,"
        "ir_r2_k5_s2_e6_c80_se0.25,ir_r2_k3_e3_c80_se0.25,"
        "ir_k3_e6_c112_se0.25,ir_r2_k5_e6_c112_se0.25,ir_k3_e3_c112_se0.25,"
        "ir_r2_k5_s2_e6_c192_se0.25,ir_r2_k3_e6_c192_se0.25" + _HARDCORE_HEAD),
}


def get_published(name: str, resolution: int | None = None, num_classes: int | None = None) -> Arch:
    """A published network by short name, optionally at another input resolution or class count."""
    if name not in PUBLISHED:
        raise ConfigError(f"unknown published network '{name}' (known: {', '.join(sorted(PUBLISHED))})")
    arch = Arch.parse(PUBLISHED[name])
    if num_classes is not None:
        *body, classifier = arch.layers
        arch = Arch((*body, Layer(classifier.op, num_classes)), arch.resolution, arch.act, arch.in_channels)
    return arch if resolution is None else arch.with_resolution(resolution)


def published_in_space(space: Space) -> dict[str, Arch]:
    """The published networks that are points of `space`, at its resolution and class count.

    Being a point means that every block, stem and head included, equals the block that
    `space.arch(space.choices_of(arch))` builds; `choices_of` alone compares only the searchable positions.
    """
    found = {}
    for name in PUBLISHED:
        arch = get_published(name, space.resolution, space.num_classes)
        try:
            point = space.arch(space.choices_of(arch))
        except ConfigError:
            continue
        if point.specs() == arch.specs():
            found[name] = arch
    return found


__all__ = ["PUBLISHED", "get_published", "published_in_space"]
