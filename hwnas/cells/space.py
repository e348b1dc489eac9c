"""Cell search spaces as data: a cell topology, its candidate operations, and the network of cells around it.

Two topologies: `darts` (Liu et al. 2019, Sec. 2.1: inputs c_{k-2}, c_{k-1}, 4 intermediate nodes, every node
fed by every earlier state, 2 edges kept per node, output = concat of the nodes; reduction cells at 1/3 and 2/3
of the depth) and `nb201` (Dong & Yang 2020: one input, 3 nodes, all 6 edges kept, output = last node; residual
stride-2 blocks between three stages). `per_cell` gives every network cell its own architecture (D-DARTS,
thesis Sec. 4.1.1) instead of one normal and one reduction cell.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from functools import cached_property
from typing import ClassVar

from hwnas.blocks import BlockSpec, Op
from hwnas.cells.blocks import primitive_spec
from hwnas.cells.genotype import CellGenotype, Genotype
from hwnas.errors import ConfigError

TOPOLOGIES = {"darts": (2, 2), "nb201": (1, None)}  # topology -> (cell inputs, edges kept per node)


@dataclass(frozen=True)
class CellSlot:
    """One cell of the network with its shapes: input states (channels, size), channels per edge, output."""

    index: int
    group: str  # genotype cell / architecture-parameter group: normal, reduce, cell, or c{index}
    reduction: bool
    channels: int  # C of the cell's edges
    inputs: tuple[tuple[int, int], ...]  # (channels, size) of each raw input state
    size: int  # spatial size the cell's edges see at stride 1 (after a reduction: the output size)
    preprocess: tuple[BlockSpec, ...]  # DARTS: one per input (1x1 ReLU-conv-BN or factorized reduce)
    out_channels: int

    @property
    def in_size(self) -> int:
        return self.inputs[-1][1]


@dataclass(frozen=True)
class CellSpace:
    """A cell search space plus the network it is searched in (channels C, cells, resolution, classes)."""

    kind: ClassVar[str] = "cell"  # what `hwnas.strategies.space_kind` reports
    name: str
    primitives: tuple[str, ...]
    topology: str = "darts"
    nodes: int = 4
    layers: int = 8
    channels: int = 16
    stem_multiplier: int = 3
    resolution: int = 32
    num_classes: int = 10
    per_cell: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if self.topology not in TOPOLOGIES:
            raise ConfigError(f"space '{self.name}': topology '{self.topology}' (expected darts or nb201)")
        if self.topology == "nb201" and (self.layers % 3 or self.layers < 3):
            raise ConfigError(f"space '{self.name}': a NAS-Bench-201 network has 3 equal stages; layers="
                              f"{self.layers} is not a positive multiple of 3")
        if self.layers < 1 or self.channels < 2 or self.resolution < 4:
            raise ConfigError(f"space '{self.name}': layers={self.layers}, channels={self.channels}, resolution="
                              f"{self.resolution} (expected >= 1, >= 2, >= 4)")

    # -- variants -----------------------------------------------------------------------------------------
    def with_resolution(self, resolution: int) -> CellSpace:
        return replace(self, resolution=resolution)

    def with_classes(self, num_classes: int) -> CellSpace:
        return replace(self, num_classes=num_classes)

    def with_network(self, channels: int | None = None, layers: int | None = None) -> CellSpace:
        return replace(self, channels=channels or self.channels, layers=layers or self.layers)

    def with_per_cell(self, per_cell: bool = True) -> CellSpace:
        return replace(self, per_cell=per_cell)

    def nearest_layers(self, count: int) -> int:
        """The cell count nearest `count` that this topology allows (NAS-Bench-201: a multiple of 3, its stages)."""
        if self.topology == "nb201":
            return max(3, 3 * round(count / 3))
        return max(1, count)

    # -- topology -----------------------------------------------------------------------------------------
    @property
    def inputs(self) -> int:
        return TOPOLOGIES[self.topology][0]

    @property
    def keep(self) -> int | None:
        """Edges a discrete node keeps (None: all of them)."""
        return TOPOLOGIES[self.topology][1]

    @cached_property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """(node, source state) of every candidate edge, in DARTS order (node by node, sources ascending)."""
        return tuple((node, source) for node in range(self.nodes) for source in range(self.inputs + node))

    def edge_index(self, node: int, source: int) -> int:
        return self.edges.index((node, source))

    @property
    def reductions(self) -> tuple[int, ...]:
        """Cell indices after which (nb201) or at which (darts) the resolution halves."""
        if self.topology == "nb201":
            per_stage = self.layers // 3
            return (per_stage, 2 * per_stage)
        return tuple(sorted({self.layers // 3, 2 * self.layers // 3}))

    @cached_property
    def groups(self) -> tuple[str, ...]:
        """Architecture-parameter groups (= genotype cell names), in order of first use."""
        return tuple(dict.fromkeys(slot.group for slot in self.slots))

    # -- network layout -----------------------------------------------------------------------------------
    @cached_property
    def stem(self) -> BlockSpec:
        width = self.channels * (self.stem_multiplier if self.topology == "darts" else 1)
        return BlockSpec(Op("cn", kernel=3), 3, width, self.resolution, self.resolution, 1)

    @cached_property
    def slots(self) -> tuple[CellSlot, ...]:
        return self._darts_slots() if self.topology == "darts" else self._nb201_slots()[0]

    def _group(self, index: int, reduction: bool) -> str:
        if self.per_cell:
            return f"c{index}"
        if self.topology == "nb201":
            return "cell"
        return "reduce" if reduction else "normal"

    def _darts_slots(self) -> tuple[CellSlot, ...]:
        width = self.stem.cout
        prev_prev, prev = (width, self.resolution), (width, self.resolution)
        channels, reduction_prev, slots = self.channels, False, []
        for index in range(self.layers):
            reduction = index in self.reductions
            channels *= 2 if reduction else 1
            size = prev[1]
            first = (BlockSpec(Op("fr"), prev_prev[0], channels, prev_prev[1], prev_prev[1], 2) if reduction_prev
                     else BlockSpec(Op("rcb", kernel=1), prev_prev[0], channels, size, size, 1))
            second = BlockSpec(Op("rcb", kernel=1), prev[0], channels, size, size, 1)
            out_size = math.ceil(size / 2) if reduction else size
            slots.append(CellSlot(index, self._group(index, reduction), reduction, channels, (prev_prev, prev),
                                  out_size, (first, second), channels * self.nodes))
            prev_prev, prev, reduction_prev = prev, (channels * self.nodes, out_size), reduction
        return tuple(slots)

    def _nb201_slots(self) -> tuple[tuple[CellSlot, ...], tuple[tuple[int, BlockSpec], ...]]:
        channels, size, slots, transitions = self.stem.cout, self.resolution, [], []
        for index in range(self.layers):
            if index in self.reductions:
                block = BlockSpec(Op("resred"), channels, channels * 2, size, size, 2)
                transitions.append((index, block))
                channels, size = channels * 2, math.ceil(size / 2)
            slots.append(CellSlot(index, self._group(index, False), False, channels, ((channels, size),), size, (),
                                  channels))
        return tuple(slots), tuple(transitions)

    @cached_property
    def transitions(self) -> tuple[tuple[int, BlockSpec], ...]:
        """(cell index, block) of blocks between cells: NAS-Bench-201's residual reductions before that cell."""
        return self._nb201_slots()[1] if self.topology == "nb201" else ()

    @cached_property
    def tail(self) -> tuple[BlockSpec, ...]:
        last = self.slots[-1]
        head = BlockSpec(Op("fc"), last.out_channels, self.num_classes, last.size, last.size, 1)
        if self.topology == "nb201":
            return (BlockSpec(Op("bnrelu"), last.out_channels, last.out_channels, last.size, last.size, 1), head)
        return (head,)

    def edge_spec(self, slot: CellSlot, edge: int, primitive: str) -> BlockSpec:
        """The LUT unit of candidate `primitive` on edge `edge` of `slot`."""
        _, source = self.edges[edge]
        from_input = source < self.inputs
        stride = 2 if (slot.reduction and from_input) else 1
        size = slot.in_size if from_input else slot.size
        return primitive_spec(primitive, slot.channels, size, size, stride)

    def fixed_specs(self) -> list[BlockSpec]:
        """Blocks every architecture of the space has: stem, cell preprocessing, transitions, tail."""
        return [self.stem, *(s for slot in self.slots for s in slot.preprocess),
                *(block for _, block in self.transitions), *self.tail]

    def candidate_specs(self, slot: CellSlot) -> list[list[BlockSpec]]:
        """[edge][primitive] BlockSpecs of one cell: what the expected latency of its mixed edges weighs."""
        return [[self.edge_spec(slot, e, p) for p in self.primitives] for e in range(len(self.edges))]

    def specs(self) -> list[BlockSpec]:
        """Every unique BlockSpec an architecture of this space can contain: what its LUT must hold."""
        candidates = [spec for slot in self.slots for row in self.candidate_specs(slot) for spec in row]
        return list(dict.fromkeys([*self.fixed_specs(), *candidates]))

    # -- architectures ------------------------------------------------------------------------------------
    def check(self, genotype: Genotype) -> None:
        """A one-line ConfigError unless `genotype` is a discrete architecture of this space."""
        if set(genotype.names) != set(self.groups):
            raise ConfigError(f"genotype cells {', '.join(genotype.names)} do not match space '{self.name}' "
                              f"(expects {', '.join(self.groups)})")
        for name, cell in genotype.cells:
            if len(cell.nodes) != self.nodes:
                raise ConfigError(f"genotype cell '{name}' has {len(cell.nodes)} nodes, space '{self.name}' has "
                                  f"{self.nodes}")
            for node, op, source in cell.edges():
                if op not in self.primitives:
                    raise ConfigError(f"genotype cell '{name}' node {node}: '{op}' is not an operation of space "
                                      f"'{self.name}' ({', '.join(self.primitives)})")
                if source >= self.inputs + node:
                    raise ConfigError(f"genotype cell '{name}' node {node}: input {source} does not exist yet "
                                      f"(inputs 0..{self.inputs + node - 1})")
            if any(not node for node in cell.nodes):
                raise ConfigError(f"genotype cell '{name}': every node needs at least one input edge")

    def arch(self, genotype: Genotype | str):
        """The discrete network of `genotype` in this space (a `CellArch`)."""
        from hwnas.cells.network import CellArch

        if isinstance(genotype, str):
            genotype = Genotype.parse(genotype)
        space = self.with_per_cell(genotype.names[0] == "c0") if genotype.names else self
        return CellArch(space, genotype)

    def sample_genotype(self, rng: random.Random) -> Genotype:
        """Uniform: each node draws its kept sources without replacement and a non-`none` op per edge
        (NAS-Bench-201 keeps every edge and may draw `none`)."""
        ops = [p for p in self.primitives if p != "none"] if self.keep else list(self.primitives)
        cells = []
        for group in self.groups:
            nodes = []
            for node in range(self.nodes):
                sources = list(range(self.inputs + node))
                chosen = sorted(rng.sample(sources, min(self.keep, len(sources)))) if self.keep else sources
                nodes.append(tuple((rng.choice(ops), source) for source in chosen))
            cells.append((group, CellGenotype(tuple(nodes))))
        return Genotype(tuple(cells))

    def sample(self, rng: random.Random):
        """A uniformly random discrete network (`CellArch`), as `hwnas lut validate` draws them."""
        return self.arch(self.sample_genotype(rng))

    def latency_range_ms(self, model) -> tuple[float, float]:
        """Fastest and slowest discrete network on a `LatencyModel`'s device (`hwnas.budget.costs.space_range_ms`)."""
        from hwnas.cells.latency import CellCost

        return CellCost.from_model(self, model).range_ms

    @property
    def size(self) -> int:
        """Number of distinct genotypes (DARTS: per cell prod_i C(i+2, 2)·K^2, cf. thesis Eq. 4.1)."""
        ops = len([p for p in self.primitives if p != "none"]) if self.keep else len(self.primitives)
        per_cell = 1
        for node in range(self.nodes):
            sources = self.inputs + node
            per_cell *= math.comb(sources, self.keep) * ops ** self.keep if self.keep else ops ** sources
        return per_cell ** len(self.groups)
