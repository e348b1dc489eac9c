"""Block specifications: what a block computes (`Op`), at which shape (`BlockSpec`), and the block-type registry.

Block strings follow timm's grammar (`ir_r2_k3_s2_e6_c24_se0.25_nhs`). One registry entry per block type
carries its parsing rules and its builder, so parse, build and the LUT key never drift apart.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from numbers import Integral, Real
from typing import Any

from torch import nn

from hwnas import ops
from hwnas.errors import HwnasError
from hwnas.units import (
    MAX_CHANNELS,
    MAX_DILATION,
    MAX_EXPANSION,
    MAX_KERNEL,
    MAX_RESOLUTION,
    MAX_STRIDE,
    MIN_EXPANSION,
    check_range,
)

ACT_CODES = {"re": "relu", "r6": "relu6", "hs": "hswish", "sw": "swish"}
ACT_NAMES = {name: code for code, name in ACT_CODES.items()}

# Field letter -> Op attribute, in canonical order. r, s and c belong to a layer row, not to the op.
_OP_FIELDS = {"k": "kernel", "d": "dilation", "e": "expansion", "g": "groups", "se": "se", "h": "hidden"}
_ROW_FIELDS = {"r": "repeats", "s": "stride", "c": "channels"}
_CANONICAL_ORDER = ("r", "k", "d", "s", "e", "c", "g", "se", "h", "n")
_PREFIXES = ("se", "r", "k", "d", "s", "e", "c", "g", "h", "n")  # 'se' before 's'
_DEFAULTS = {"kernel": 0, "dilation": 1, "expansion": 0.0, "groups": 1, "se": 0.0, "hidden": 0}
# Op attribute -> (low, high, kind of number): checked for each attribute its block type takes.
_OP_BOUNDS = {"kernel": (1, MAX_KERNEL, Integral), "dilation": (1, MAX_DILATION, Integral),
              "expansion": (MIN_EXPANSION, MAX_EXPANSION, Real), "groups": (1, MAX_CHANNELS, Integral),
              "se": (0, 1, Real), "hidden": (0, MAX_CHANNELS, Integral)}


class BlockStringError(HwnasError):
    """A block or architecture string does not follow the grammar."""


@dataclass(frozen=True)
class BlockType:
    """A kind of block: which fields it takes, which it requires, and how it builds at a given shape."""

    name: str
    build: Callable[[BlockSpec], nn.Module]
    takes: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()
    has_act: bool = False
    act_needs: str | None = None  # the activation applies only when this field is set (fc: hidden layer)
    doc: str = ""


BLOCK_TYPES: dict[str, BlockType] = {}
# Modules of hwnas that register more block types, imported on the first lookup of a kind not yet known.
EXTENSION_MODULES = ("hwnas.cells.blocks",)


def register_block_type(block_type: BlockType) -> BlockType:
    """Add a block type to the registry (spaces and third parties extend it this way)."""
    BLOCK_TYPES[block_type.name] = block_type
    return block_type


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Op:
    """What a block computes, independent of its input shape: kind plus kernel, expansion, groups, SE, ..."""

    kind: str
    kernel: int = 0
    dilation: int = 1
    expansion: float = 0.0
    groups: int = 1
    se: float = 0.0
    hidden: int = 0
    act: str = ""

    def __post_init__(self) -> None:
        """Refuse an unknown kind, activation or an attribute out of bounds here, before any module is built."""
        block_type = BLOCK_TYPES.get(self.kind) or _load_extensions(self.kind)
        if block_type is None:
            raise BlockStringError(f"unknown block type '{self.kind}' (known: {', '.join(sorted(BLOCK_TYPES))})")
        if self.act and self.act not in ACT_NAMES:
            raise BlockStringError(f"block '{self.kind}': activation '{self.act}' is not one of "
                                   f"{', '.join(ACT_NAMES)}")
        for name in sorted(block_type.takes):
            low, high, kind = _OP_BOUNDS[name]
            check_range(getattr(self, name), f"block '{self.kind}': {name}", low, high, kind)
        if "kernel" in block_type.takes and self.kernel % 2 == 0:
            raise BlockStringError(f"block '{self.kind}': kernel is {self.kernel}, expected an odd size (same "
                                   "padding keeps the feature map's size)")

    @property
    def type(self) -> BlockType:
        return BLOCK_TYPES[self.kind]

    def token(self, default_act: str | None = None) -> str:
        """Canonical string, e.g. `ir_k5_e6_se0.25_nhs`; the activation is left out when it equals `default_act`."""
        return format_block_string(self, default_act=default_act)

    @classmethod
    def parse(cls, token: str, default_act: str = "relu") -> Op:
        op, row = parse_block_string(token, default_act)
        if row:
            raise BlockStringError(f"op token '{token}' must not carry {'/'.join(sorted(row))} (layer fields)")
        return op


def parse_block_string(text: str, default_act: str = "relu") -> tuple[Op, dict[str, int]]:
    """Parse `ir_r2_k3_s2_e6_c24` into its Op and the layer fields present (repeats, stride, channels)."""
    kind, *parts = text.strip().split("_")
    block_type = BLOCK_TYPES.get(kind) or _load_extensions(kind)
    if block_type is None:
        raise BlockStringError(f"'{text}': unknown block type '{kind}' (known: {', '.join(sorted(BLOCK_TYPES))})")
    values: dict[str, Any] = {}
    row: dict[str, int] = {}
    act = default_act if block_type.has_act else ""
    for part in parts:
        prefix = next((p for p in _PREFIXES if part.startswith(p) and len(part) > len(p)), None)
        if prefix is None:
            raise BlockStringError(f"'{text}': cannot read field '{part}'")
        raw = part[len(prefix):]
        try:
            if prefix == "n":
                if raw not in ACT_CODES or not block_type.has_act:
                    raise ValueError
                act = ACT_CODES[raw]
            elif prefix in _ROW_FIELDS:
                row[_ROW_FIELDS[prefix]] = int(raw)
            else:
                name = _OP_FIELDS[prefix]
                values[name] = float(raw) if name in ("expansion", "se") else int(raw)
        except ValueError:
            raise BlockStringError(f"'{text}': bad value in field '{part}'") from None
    extra = set(values) - block_type.takes
    if extra:
        raise BlockStringError(f"'{text}': block type '{kind}' does not take {', '.join(sorted(extra))}")
    if block_type.act_needs and not values.get(block_type.act_needs):
        act = ""
    missing = block_type.requires - set(values)
    if missing:
        raise BlockStringError(f"'{text}': block type '{kind}' needs {', '.join(sorted(missing))}")
    return Op(kind=kind, act=act, **values), row


def _load_extensions(kind: str) -> BlockType | None:
    for module in EXTENSION_MODULES:
        importlib.import_module(module)
    return BLOCK_TYPES.get(kind)


def format_block_string(op: Op, repeats: int = 1, stride: int = 1, channels: int | None = None,
                        default_act: str | None = None) -> str:
    """Inverse of `parse_block_string`, in canonical field order; r and s appear only when above 1."""
    parts: dict[str, str] = {}
    if repeats > 1:
        parts["r"] = str(repeats)
    if stride > 1:
        parts["s"] = str(stride)
    if channels is not None:
        parts["c"] = str(channels)
    for letter, name in _OP_FIELDS.items():
        value = getattr(op, name)
        if name in op.type.takes and (name in op.type.requires or value != _DEFAULTS[name]):
            parts[letter] = _format_number(value)
    if op.act and op.act != default_act:
        parts["n"] = ACT_NAMES[op.act]
    return "_".join([op.kind] + [f"{letter}{parts[letter]}" for letter in _CANONICAL_ORDER if letter in parts])


_KEY_RE = re.compile(r"^(?P<token>[a-z0-9_.]+):s(?P<stride>\d+):(?P<cin>\d+)x(?P<h>\d+)x(?P<w>\d+)>(?P<cout>\d+)$")


@dataclass(frozen=True)
class BlockSpec:
    """One block at one input shape: the unit the LUT measures. `key` is its canonical string."""

    op: Op
    cin: int
    cout: int
    h: int
    w: int
    stride: int = 1

    def __post_init__(self) -> None:
        """Refuse a shape out of bounds, or groups that do not divide the channels, before anything is built."""
        try:
            for name, high in (("cin", MAX_CHANNELS), ("cout", MAX_CHANNELS), ("h", MAX_RESOLUTION),
                               ("w", MAX_RESOLUTION), ("stride", MAX_STRIDE)):
                check_range(getattr(self, name), name, 1, high)
        except HwnasError as error:  # the key only now: specs are made by the thousand
            raise BlockStringError(f"block '{self.key}': {error}") from None
        if self.op.groups > 1 and (self.cin % self.op.groups or self.cout % self.op.groups):
            raise BlockStringError(f"block '{self.key}': groups {self.op.groups} must divide its input and output "
                                   f"channels ({self.cin} -> {self.cout})")

    @property
    def key(self) -> str:
        """E.g. `ir_k5_e6_se0.25_nre:s2:24x56x56>40` (activation always explicit)."""
        return f"{self.op.token()}:s{self.stride}:{self.cin}x{self.h}x{self.w}>{self.cout}"

    @classmethod
    def from_key(cls, key: str) -> BlockSpec:
        match = _KEY_RE.match(key)
        if not match:
            raise BlockStringError(f"'{key}' is not a block key (expected e.g. ir_k3_e6_nre:s2:24x56x56>40)")
        op = Op.parse(match["token"], default_act="")
        return cls(op, int(match["cin"]), int(match["cout"]), int(match["h"]), int(match["w"]),
                   int(match["stride"]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.cin, self.h, self.w)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        if self.op.kind == "fc":
            return (self.cout, 1, 1)
        return (self.cout, math.ceil(self.h / self.stride), math.ceil(self.w / self.stride))

    def build(self) -> nn.Module:
        """A fresh, randomly initialised module for this block."""
        return self.op.type.build(self)

    def to_row(self) -> dict[str, Any]:
        """Flat dict for a LUT row (every Op field as a column, plus shape)."""
        row = {"key": self.key}
        row.update({f.name: getattr(self.op, f.name) for f in fields(Op)})
        row.update(cin=self.cin, cout=self.cout, h=self.h, w=self.w, stride=self.stride)
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> BlockSpec:
        """Rebuild from a LUT row; the row's `key` must agree with its columns."""
        op_values: dict[str, Any] = {"kind": str(row["kind"])}
        for f in fields(Op)[1:]:
            value = row.get(f.name, f.default)
            if isinstance(f.default, str):
                op_values[f.name] = value if isinstance(value, str) else ""  # pandas reads '' as NaN
            else:
                op_values[f.name] = type(f.default)(value)
        spec = cls(Op(**op_values), int(row["cin"]), int(row["cout"]), int(row["h"]), int(row["w"]),
                   int(row["stride"]))
        if "key" in row and row["key"] != spec.key:
            raise BlockStringError(f"LUT row key '{row['key']}' disagrees with its columns ({spec.key})")
        return spec


def _build_conv(spec: BlockSpec) -> nn.Module:
    op = spec.op
    return ops.ConvBnAct(spec.cin, spec.cout, op.kernel, spec.stride, op.groups, op.dilation, op.act)


def _build_ir(spec: BlockSpec) -> nn.Module:
    op = spec.op
    return ops.InvertedResidual(spec.cin, spec.cout, op.kernel, spec.stride, op.expansion, op.groups, op.se,
                                op.act, op.dilation)


def _build_ds(spec: BlockSpec) -> nn.Module:
    return ops.DepthwiseSeparable(spec.cin, spec.cout, spec.op.kernel, spec.stride, spec.op.se, spec.op.act)


def _builtin_types() -> list[BlockType]:
    return [
        BlockType("cn", _build_conv, takes=frozenset({"kernel", "groups", "dilation"}), requires=frozenset({"kernel"}),
                  has_act=True, doc="convolution + BN + activation (stems, 1x1 head convs)"),
        BlockType("ir", _build_ir, takes=frozenset({"kernel", "expansion", "groups", "se", "dilation"}),
                  requires=frozenset({"kernel", "expansion"}), has_act=True,
                  doc="inverted residual: 1x1 expand (grouped + shuffle when g>1), kxk depthwise, SE, 1x1 project"),
        BlockType("ds", _build_ds, takes=frozenset({"kernel", "se"}), requires=frozenset({"kernel"}), has_act=True,
                  doc="depthwise separable: kxk depthwise, SE, 1x1 project"),
        BlockType("skip", lambda s: ops.Skip(s.cin, s.cout, s.stride),
                  doc="identity, or a strided 1x1 conv-BN projection when shapes differ"),
        BlockType("zero", lambda s: ops.Zero(s.cin, s.cout, s.stride), doc="zeros (the DARTS 'none' operation)"),
        BlockType("fc", lambda s: ops.Classifier(s.cin, s.cout, s.op.hidden, s.op.act), takes=frozenset({"hidden"}),
                  has_act=True, act_needs="hidden",
                  doc="global average pool, optional hidden linear + activation, linear classifier"),
    ]


for _block_type in _builtin_types():
    register_block_type(_block_type)
