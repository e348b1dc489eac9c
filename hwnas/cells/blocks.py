"""Cell operations as block types of the `hwnas.blocks` registry, so each has a LUT key and builds like any block.

A cell's primitive (DARTS' `sep_conv_3x3`, NAS-Bench-201's `nor_conv_1x1`, DARTOpti's `bottleneck_1x3x1`) maps to
an `Op` token; at a given shape and stride that is a `BlockSpec`, e.g. `sep_k3:s2:16x32x32>16`.
"""

from __future__ import annotations

from hwnas.blocks import BLOCK_TYPES, BlockSpec, BlockType, Op, register_block_type
from hwnas.cells import ops
from hwnas.errors import ConfigError, HwnasError

# Primitive name (as the papers write it) -> op token at stride 1. DARTS `skip_connect` at stride 2 is `fr`.
PRIMITIVE_TOKENS = {
    "none": "zero",
    "max_pool_3x3": "maxpool_k3",
    "avg_pool_3x3": "avgpool_k3",
    "skip_connect": "skip",
    "sep_conv_3x3": "sep_k3",
    "sep_conv_5x5": "sep_k5",
    "dil_conv_3x3": "dil_k3_d2",
    "dil_conv_5x5": "dil_k5_d2",
    # NAS-Bench-201 (Dong & Yang 2020): ReLU-conv-BN
    "nor_conv_1x1": "rcb_k1",
    "nor_conv_3x3": "rcb_k3",
    # DARTOpti additions (thesis Sec. 4.1.4)
    "conv_3x1_1x3": "fac_k3",
    "conv_7x1_1x7": "fac_k7",
    "simple_conv_1x1": "rcb_k1",
    "simple_conv_3x3": "rcb_k3",
    "bottleneck_1x3x1": "bneck",
}
PARAMETER_FREE = frozenset({"none", "max_pool_3x3", "avg_pool_3x3", "skip_connect"})


def primitive_op(name: str, stride: int = 1) -> Op:
    """The block-registry Op of a cell primitive at `stride` (a strided skip is DARTS' factorized reduce)."""
    if name not in PRIMITIVE_TOKENS:
        raise ConfigError(f"unknown cell operation '{name}' (known: {', '.join(sorted(PRIMITIVE_TOKENS))})")
    token = "fr" if (name == "skip_connect" and stride > 1) else PRIMITIVE_TOKENS[name]
    return Op.parse(token, default_act="")


def primitive_spec(name: str, channels: int, h: int, w: int, stride: int = 1) -> BlockSpec:
    """The LUT unit of one cell edge: primitive `name` on `channels` channels at h x w with `stride`."""
    return BlockSpec(primitive_op(name, stride), channels, channels, h, w, stride)


def _kernel(spec: BlockSpec) -> int:
    return spec.op.kernel


def _cell_types() -> list[BlockType]:
    k = frozenset({"kernel"})
    return [
        BlockType("sep", lambda s: ops.SepConv(s.cin, s.cout, _kernel(s), s.stride), takes=k, requires=k,
                  doc="DARTS separable conv: (ReLU, kxk depthwise, 1x1, BN) twice"),
        BlockType("dil", lambda s: ops.DilConv(s.cin, s.cout, _kernel(s), s.stride, s.op.dilation),
                  takes=k | {"dilation"}, requires=k | {"dilation"},
                  doc="DARTS dilated conv: ReLU, dilated kxk depthwise, 1x1, BN"),
        BlockType("maxpool", lambda s: ops.Pool("max", s.cin, s.cout, _kernel(s), s.stride), takes=k, requires=k,
                  doc="kxk max pooling (DARTS max_pool_3x3)"),
        BlockType("avgpool", lambda s: ops.Pool("avg", s.cin, s.cout, _kernel(s), s.stride), takes=k, requires=k,
                  doc="kxk average pooling without padding in the mean (DARTS/NAS-Bench-201 avg_pool_3x3)"),
        BlockType("fr", lambda s: ops.FactorizedReduce(s.cin, s.cout),
                  doc="DARTS factorized reduce: ReLU, two offset stride-2 1x1 convs, concat, BN"),
        BlockType("rcb", lambda s: ops.ReLUConvBN(s.cin, s.cout, _kernel(s), s.stride, s.op.dilation),
                  takes=k | {"dilation"}, requires=k,
                  doc="ReLU, kxk conv, BN (NAS-Bench-201 nor_conv, DARTOpti simple_conv, cell preprocessing)"),
        BlockType("fac", lambda s: ops.FactorizedConv(s.cin, s.cout, _kernel(s), s.stride), takes=k, requires=k,
                  doc="ReLU, 1xk conv, kx1 conv, BN (DARTOpti conv_3x1_1x3 / conv_7x1_1x7)"),
        BlockType("bneck", lambda s: ops.Bottleneck(s.cin, s.cout, s.stride),
                  doc="ResNet bottleneck 1x1 (C/4), 3x3, 1x1 as ReLU-conv-BN (DARTOpti bottleneck_1x3x1)"),
        BlockType("resred", lambda s: ops.ResidualReduction(s.cin, s.cout, s.stride),
                  doc="NAS-Bench-201 stage transition: stride-2 basic residual block"),
        BlockType("bnrelu", lambda s: ops.BnRelu(s.cin), doc="BatchNorm + ReLU (NAS-Bench-201 last activation)"),
    ]


def register_cell_block_types() -> None:
    """Add the cell block types to `hwnas.blocks.BLOCK_TYPES` (idempotent); refuse to shadow another's type."""
    for block_type in _cell_types():
        existing = BLOCK_TYPES.get(block_type.name)
        if existing is not None and existing.doc != block_type.doc:
            raise HwnasError(f"block type '{block_type.name}' is already registered by another module "
                             f"({existing.doc!r}); the cell operations need that name")
        register_block_type(block_type)
