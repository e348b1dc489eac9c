"""A discrete network of cells (`CellArch`): an `Arch`-like value whose `specs()` are exactly the blocks `build()`
instantiates, so the LUT prices it, `hwnas lut validate` measures it and the exporters convert it like any `Arch`.

String form: `cells:SPACE:RESOLUTION:cC_lLAYERS_kCLASSES:GENOTYPE`, e.g.
`cells:darts:32:c16_l8_k10:normal=|sep_conv_3x3~0|sep_conv_3x3~1|+...;reduce=...`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.blocks import BlockSpec
from hwnas.cells.genotype import Genotype
from hwnas.cells.space import CellSlot, CellSpace
from hwnas.errors import ConfigError
from hwnas.units import MAX_CELLS, MAX_CHANNELS, MAX_RESOLUTION, parse_int

PREFIX = "cells:"
_NETWORK = re.compile(r"^c(\d+)_l(\d+)_k(\d+)$")


@dataclass(frozen=True)
class CellArch:
    """A genotype placed in its space's network: `build()` is the deployable model, `specs()` what the LUT sums."""

    space: CellSpace
    genotype: Genotype

    def __post_init__(self) -> None:
        self.space.check(self.genotype)

    # -- the Arch face --------------------------------------------------------------------------------------
    @property
    def resolution(self) -> int:
        return self.space.resolution

    @property
    def num_classes(self) -> int:
        return self.space.num_classes

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.resolution, self.resolution)

    def with_resolution(self, resolution: int) -> CellArch:
        return CellArch(self.space.with_resolution(resolution), self.genotype)

    def with_classes(self, num_classes: int) -> CellArch:
        return CellArch(self.space.with_classes(num_classes), self.genotype)

    def with_network(self, channels: int | None = None, layers: int | None = None) -> CellArch:
        """The same cells in a wider or deeper network (DARTS evaluates at C=36, 20 cells)."""
        if layers and self.space.per_cell and layers != self.space.layers:
            raise ConfigError("a per-cell genotype fixes the depth; grow it with hwnas.cells.grow_genotype")
        return CellArch(self.space.with_network(channels, layers), self.genotype)

    def edge_specs(self, slot: CellSlot) -> list[tuple[int, int, BlockSpec]]:
        """(node, source, spec) of each kept edge of the cell in `slot`."""
        cell = self.genotype[slot.group]
        return [(node, source, self.space.edge_spec(slot, self.space.edge_index(node, source), op))
                for node, op, source in cell.edges()]

    def specs(self) -> list[BlockSpec]:
        """Every block in network order: stem, per cell its preprocessing and kept edges, transitions, tail."""
        transitions = dict(self.space.transitions)
        specs = [self.space.stem]
        for slot in self.space.slots:
            if slot.index in transitions:
                specs.append(transitions[slot.index])
            specs.extend(slot.preprocess)
            specs.extend(spec for _, _, spec in self.edge_specs(slot))
        return [*specs, *self.space.tail]

    def build(self) -> nn.Module:
        """The deployable network: plain modules, nothing left of the supernet."""
        return CellNetwork(self)

    # -- serialisation ------------------------------------------------------------------------------------
    def to_string(self) -> str:
        s = self.space
        return f"{PREFIX}{s.name}:{s.resolution}:c{s.channels}_l{s.layers}_k{s.num_classes}:{self.genotype}"

    __str__ = to_string

    @classmethod
    def parse(cls, text: str) -> CellArch:
        from hwnas.cells.catalog import get_cell_space

        parts = text.strip().split(":", 4)
        if len(parts) != 5 or parts[0] + ":" != PREFIX or not _NETWORK.match(parts[3]):
            raise ConfigError(f"'{text[:60]}': a cell architecture string is cells:SPACE:RESOLUTION:cC_lL_kCLASSES:"
                              "GENOTYPE (e.g. cells:darts:32:c16_l8_k10:normal=...;reduce=...)")
        _, name, resolution, network, genotype = parts
        width, depth, outputs = _NETWORK.match(network).groups()
        classes = parse_int(outputs, "cell network classes", 1, MAX_CHANNELS)
        space = get_cell_space(name, parse_int(resolution, "input resolution", 1, MAX_RESOLUTION), classes)
        space = space.with_network(parse_int(width, "cell network channels", 1, MAX_CHANNELS),
                                   parse_int(depth, "cell network layers", 1, MAX_CELLS))
        return space.arch(Genotype.parse(genotype))

    def to_json(self) -> dict[str, Any]:
        s = self.space
        return {"arch": self.to_string(), "space": s.name, "resolution": s.resolution, "channels": s.channels,
                "layers": s.layers, "num_classes": s.num_classes, **self.genotype.to_json()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellArch:
        if "arch" not in data:
            raise ConfigError("cell architecture JSON needs its 'arch' string")
        return cls.parse(data["arch"])

    def save(self, path: str | Path, **extra: Any) -> None:
        Path(path).write_text(json.dumps({**self.to_json(), **extra}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CellArch:
        """An arch.json of a cell network; an unreadable or foreign file is one line naming it (as `Arch.load`)."""
        from hwnas.arch import Arch

        arch = Arch.load(path)
        if not isinstance(arch, CellArch):
            raise ConfigError(f"{path}: a chain architecture, expected a cell network (cells:...)")
        return arch


class DiscreteCell(nn.Module):
    """One cell: preprocess its inputs, each node sums its kept edges, output the concat (DARTS) or last node."""

    def __init__(self, arch: CellArch, slot: CellSlot):
        super().__init__()
        self.preprocess = nn.ModuleList(spec.build() for spec in slot.preprocess)
        self.plan = [(node, source) for node, source, _ in arch.edge_specs(slot)]
        self.ops = nn.ModuleList(spec.build() for _, _, spec in arch.edge_specs(slot))
        self.inputs, self.nodes = arch.space.inputs, arch.space.nodes
        self.concat = arch.space.topology == "darts"

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        states = [pre(x) for pre, x in zip(self.preprocess, inputs)] if len(self.preprocess) else list(inputs)
        for node in range(self.nodes):
            terms = [op(states[source]) for (n, source), op in zip(self.plan, self.ops) if n == node]
            states.append(sum(terms[1:], terms[0]))
        return torch.cat(states[self.inputs:], dim=1) if self.concat else states[-1]


class CellNetwork(nn.Module):
    """Stem, cells (with NAS-Bench-201's transition blocks), tail: the network a `CellArch` describes."""

    def __init__(self, arch: CellArch):
        super().__init__()
        space = arch.space
        self.stem = space.stem.build()
        self.cells = nn.ModuleList(DiscreteCell(arch, slot) for slot in space.slots)
        transitions = dict(space.transitions)
        self.transitions = nn.ModuleDict({str(i): block.build() for i, block in transitions.items()})
        self.tail = nn.Sequential(*(spec.build() for spec in space.tail))
        self.two_inputs = space.inputs == 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prev_prev = prev = self.stem(x)
        for index, cell in enumerate(self.cells):
            if str(index) in self.transitions:
                prev = self.transitions[str(index)](prev)
            out = cell(prev_prev, prev) if self.two_inputs else cell(prev)
            prev_prev, prev = prev, out
        return self.tail(prev)
