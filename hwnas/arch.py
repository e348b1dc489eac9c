"""Discrete architectures: a sequence of timm-style layer rows at an input resolution, as string and JSON.

String form: `RESOLUTION:ACT:ROW,ROW,...`, e.g.
`224:relu6:cn_k3_s2_c32,ds_k3_c16,ir_r2_k3_s2_e6_c24,...,cn_k1_c1280,fc_c1000`.
ACT is the default activation; a row names its own only where it differs (`_nhs`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from torch import nn

from hwnas.blocks import ACT_CODES, BlockSpec, BlockStringError, Op, format_block_string, parse_block_string
from hwnas.errors import ConfigError, HwnasError
from hwnas.units import (
    MAX_CHANNELS,
    MAX_REPEATS,
    MAX_RESOLUTION,
    MAX_STRIDE,
    check_range,
    check_resolution,
    is_decimal,
    parse_int,
    shown,
)


@dataclass(frozen=True)
class Layer:
    """One row: `op` repeated `repeats` times to `channels` outputs; the first repeat has `stride`."""

    op: Op
    channels: int
    stride: int = 1
    repeats: int = 1

    def __post_init__(self) -> None:
        """Refuse channels, stride or repeats out of bounds where a row enters (string, JSON or code)."""
        where = f"layer '{self.op.kind}'"
        check_range(self.channels, f"{where}: channels", 1, MAX_CHANNELS)
        check_range(self.stride, f"{where}: stride", 1, MAX_STRIDE)
        check_range(self.repeats, f"{where}: repeats", 1, MAX_REPEATS)

    def to_string(self, default_act: str | None = None) -> str:
        return format_block_string(self.op, self.repeats, self.stride, self.channels, default_act)

    @classmethod
    def parse(cls, text: str, default_act: str = "relu") -> Layer:
        op, row = parse_block_string(text, default_act)
        if "channels" not in row:
            raise BlockStringError(f"'{text}': a layer needs its output channels (c field)")
        return cls(op, row["channels"], row.get("stride", 1), row.get("repeats", 1))


@dataclass(frozen=True)
class Arch:
    """A whole network as data. `build()` gives the deployable `nn.Module`; `specs()` the blocks a LUT prices."""

    layers: tuple[Layer, ...]
    resolution: int = 224
    act: str = "relu"
    in_channels: int = 3

    def __post_init__(self) -> None:
        if not self.layers:
            raise BlockStringError("an architecture needs at least one layer")
        check_resolution(self.resolution, "input resolution")
        check_range(self.in_channels, "input channels", 1, MAX_CHANNELS)
        _check_act(self.act)

    # -- serialisation ------------------------------------------------------------------------------------
    def to_string(self) -> str:
        rows = ",".join(layer.to_string(self.act) for layer in self.layers)
        return f"{self.resolution}:{self.act}:{rows}"

    __str__ = to_string

    @classmethod
    def parse(cls, text: str) -> Arch:
        if text.strip().startswith("cells:"):  # a network of cells: hwnas.cells.CellArch, the same Arch face
            from hwnas.cells.network import CellArch

            return CellArch.parse(text)
        parts = text.strip().split(":")
        if len(parts) != 3:
            raise BlockStringError(
                f"'{text[:60]}': an architecture string is RESOLUTION:ACTIVATION:ROW,ROW,... "
                "(e.g. 224:relu6:cn_k3_s2_c32,ds_k3_c16,...)")
        resolution, act, rows = parts
        if not is_decimal(resolution):
            raise BlockStringError(f"'{resolution[:20]}' is not an input resolution (expected an integer, e.g. 224)")
        size = parse_int(resolution, "input resolution", 1, MAX_RESOLUTION)
        _check_act(act)
        return cls(tuple(Layer.parse(row, act) for row in rows.split(",") if row), size, act)

    def to_json(self) -> dict[str, Any]:
        return {"arch": self.to_string(), "resolution": self.resolution, "act": self.act,
                "layers": [layer.to_string(self.act) for layer in self.layers]}

    @classmethod
    def from_json(cls, data: Any) -> Arch:
        """From `{"arch": STRING}` (what `save` writes), or `{"layers": [ROW, ...], "resolution": N, "act": ACT}`."""
        if not isinstance(data, dict):
            raise ConfigError(f"an architecture JSON is an object with an 'arch' string, not a {type(data).__name__}")
        if "arch" in data:
            if not isinstance(data["arch"], str):
                raise ConfigError(f"'arch' is {shown(data['arch'])}, expected an architecture string")
            return cls.parse(data["arch"])
        layers, act = data.get("layers"), data.get("act", "relu")
        if not isinstance(layers, list) or not all(isinstance(row, str) for row in layers):
            raise ConfigError("an architecture JSON needs an 'arch' string, or 'layers' as a list of row strings "
                              "with 'resolution' and 'act'")
        _check_act(act)
        return cls(tuple(Layer.parse(row, act) for row in layers),
                   check_resolution(data.get("resolution"), "'resolution'"), act)

    def save(self, path: str | Path, **extra: Any) -> None:
        Path(path).write_text(json.dumps({**self.to_json(), **extra}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Arch:
        """An arch.json; a file that is unreadable, not JSON, or not an architecture is one line naming it."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:  # JSONDecodeError: ValueError
            reason = " ".join(str(error).split())[:120]
            raise ConfigError(f"{path}: not a readable architecture JSON file ({reason})") from None
        try:
            return cls.from_json(data)
        except HwnasError as error:
            raise ConfigError(f"{path}: {error}") from None

    # -- shapes and modules -------------------------------------------------------------------------------
    def with_resolution(self, resolution: int) -> Arch:
        return Arch(self.layers, resolution, self.act, self.in_channels)

    def with_classes(self, num_classes: int) -> Arch:
        """The same network with another classifier width (the last layer must be a classifier)."""
        last = self.layers[-1]
        if last.op.kind != "fc":
            raise BlockStringError(f"the last layer '{last.to_string(self.act)}' is not a classifier (fc)")
        return Arch((*self.layers[:-1], replace(last, channels=num_classes)), self.resolution, self.act,
                    self.in_channels)

    @property
    def num_classes(self) -> int:
        return self.layers[-1].channels

    def specs(self) -> list[BlockSpec]:
        """Every block, repeats expanded, with the input shape it sees."""
        channels, size = self.in_channels, (self.resolution, self.resolution)
        specs = []
        for layer in self.layers:
            for repeat in range(layer.repeats):
                spec = BlockSpec(layer.op, channels, layer.channels, size[0], size[1],
                                 layer.stride if repeat == 0 else 1)
                specs.append(spec)
                channels, *size = spec.out_shape
        return specs

    def build(self) -> nn.Sequential:
        """The deployable network: one module per block, nothing left of any supernet."""
        return nn.Sequential(*(spec.build() for spec in self.specs()))

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_channels, self.resolution, self.resolution)


def _check_act(act: object) -> None:
    if act not in ACT_CODES.values():
        raise BlockStringError(f"{shown(act)} is not an activation (one of {', '.join(ACT_CODES.values())})")
