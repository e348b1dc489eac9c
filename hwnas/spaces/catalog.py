"""The declared search spaces, by name. Each is a value of `Space`; see the papers cited per space."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hwnas.errors import ConfigError
from hwnas.spaces.chain import Space, Stage, expand_choices
from hwnas.spaces.dense import densenas

# FBNet (Wu et al., CVPR 2019), Tables 1-2: 22 searchable layers, 9 candidates each.
FBNET_OPS = ("ir_k3_e1", "ir_k3_e1_g2", "ir_k3_e3", "ir_k3_e6", "ir_k5_e1", "ir_k5_e1_g2", "ir_k5_e3", "ir_k5_e6",
             "skip")


def fbnet() -> Space:
    stages = [(16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1)]
    return Space(
        name="fbnet",
        stem=("cn_k3_s2_c16",),
        stages=tuple(Stage(c, n, s, FBNET_OPS) for c, n, s in stages),
        head=("cn_k1_c1984",),
        act="relu",
        description="FBNet (Wu et al. 2019): 22 layers x 9 candidates (k3/k5, e1/e3/e6, grouped e1, skip)",
    )


# ProxylessNAS (Cai et al., ICLR 2019), Sec. 4: MobileNetV2 backbone, MBConv k3/5/7 x e3/6, plus zero on
# layers that have a residual. A zero path beside the residual shortcut is the identity, hence 'skip' here.
PROXYLESS_MB = expand_choices("ir_k3|5|7_e3|6")


def proxyless() -> Space:
    stages = [(24, 4, 2), (40, 4, 2), (80, 4, 2), (96, 4, 1), (192, 4, 2), (320, 1, 1)]
    return Space(
        name="proxyless",
        stem=("cn_k3_s2_c32", "ds_k3_c16"),
        stages=tuple(Stage(c, n, s, (*PROXYLESS_MB, "skip"), first_ops=PROXYLESS_MB) for c, n, s in stages),
        head=("cn_k1_c1280",),
        act="relu6",
        description="ProxylessNAS (Cai et al. 2019): 21 layers, MBConv k3/5/7 x e3/6 + zero (skip) off stage starts",
    )


# HardCoRe-NAS (Nayman et al., NeurIPS 2021), Sec. 4: MobileNetV3-like, 5 searchable stages of 2-4 blocks,
# each block k3/5 x e3/4/6 x SE on/off; ReLU in the first two stages, h-swish after.
HARDCORE_OPS = expand_choices("ir_k3|5_e3|4|6") + expand_choices("ir_k3|5_e3|4|6_se0.25")


def hardcore() -> Space:
    stages = [(24, 2, "relu"), (40, 2, "relu"), (80, 2, None), (112, 1, None), (192, 2, None)]
    return Space(
        name="hardcore",
        stem=("cn_k3_s2_c32", "ds_k3_c16_nre"),
        stages=tuple(Stage(c, 4, s, HARDCORE_OPS, min_layers=2, act=act) for c, s, act in stages),
        head=("cn_k1_c960",),
        classifier="fc_h1280",
        act="hswish",
        description="HardCoRe-NAS (Nayman et al. 2021): 5 stages x 2-4 blocks, k3/5 x e3/4/6 x SE",
    )


SPACES: dict[str, Callable[[], Space]] = {"fbnet": fbnet, "proxyless": proxyless, "hardcore": hardcore,
                                          "densenas": densenas}


def get_space(name: str, resolution: int | None = None, num_classes: int | None = None) -> Space:
    """A declared space by name, optionally at another input resolution or class count."""
    return declared_space(SPACES, "space", name, resolution, num_classes)


def declared_space(declared: Mapping[str, Callable[[], Any]], kind: str, name: str, resolution: int | None,
                   num_classes: int | None) -> Any:
    """Space `name` of a registry of declared spaces (chain or cell), at another resolution or class count if
    given."""
    if name not in declared:
        raise ConfigError(f"unknown {kind} '{name}' (known: {', '.join(sorted(declared))})")
    space = declared[name]()
    if resolution is not None:
        space = space.with_resolution(resolution)
    if num_classes is not None:
        space = space.with_classes(num_classes)
    return space
