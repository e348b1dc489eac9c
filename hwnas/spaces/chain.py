"""Search spaces as data: fixed stem and head, searchable stages of candidate ops, an input resolution.

A chain space has fixed channels and strides per stage, so every searchable position has one input shape and
its candidates are a list of BlockSpecs: exactly what the LUT must hold (`space.specs()`).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from hwnas.arch import Arch, Layer
from hwnas.blocks import BlockSpec, BlockStringError, Op
from hwnas.errors import ConfigError


def expand_choices(pattern: str) -> tuple[str, ...]:
    """`ir_k3|5_e3|6` -> ('ir_k3_e3', 'ir_k3_e6', 'ir_k5_e3', 'ir_k5_e6'): the supernet's choice form."""
    kind, *parts = pattern.split("_")
    options = []
    for part in parts:
        prefix = "".join(itertools.takewhile(str.isalpha, part))
        options.append([part] if "|" not in part else [
            prefix + value.removeprefix(prefix) for value in part.split("|")])
    return tuple("_".join([kind, *combo]) for combo in itertools.product(*options))


@dataclass(frozen=True)
class Stage:
    """`layers` searchable layers to `channels`; the first has `stride`. Candidates are op tokens."""

    channels: int
    layers: int
    stride: int
    ops: tuple[str, ...]
    first_ops: tuple[str, ...] | None = None  # candidates of the first layer when they differ (no skip there)
    min_layers: int | None = None  # depth search: layers past this one may be dropped (they gain 'skip')
    act: str | None = None  # activation of this stage's ops; the space's by default


@dataclass(frozen=True)
class Position:
    """One searchable layer: its input shape and its candidate ops."""

    index: int
    stage: int
    layer: int
    cin: int
    cout: int
    h: int
    w: int
    stride: int
    candidates: tuple[Op, ...]
    optional: bool = False  # may be dropped by depth search

    @property
    def skip_index(self) -> int | None:
        return next((i for i, op in enumerate(self.candidates) if op.kind == "skip"), None)

    @cached_property
    def specs(self) -> tuple[BlockSpec, ...]:
        return tuple(BlockSpec(op, self.cin, self.cout, self.h, self.w, self.stride) for op in self.candidates)


@dataclass(frozen=True)
class Space:
    """A chain search space. `arch(choices)` picks one candidate per position."""

    name: str
    stem: tuple[str, ...]
    stages: tuple[Stage, ...]
    head: tuple[str, ...]
    classifier: str = "fc"
    num_classes: int = 1000
    resolution: int = 224
    act: str = "relu"
    description: str = ""

    def with_resolution(self, resolution: int) -> Space:
        return replace(self, resolution=resolution)

    def with_classes(self, num_classes: int) -> Space:
        return replace(self, num_classes=num_classes)

    # -- structure ----------------------------------------------------------------------------------------
    def _layers(self, rows: Sequence[str]) -> tuple[Layer, ...]:
        return tuple(Layer.parse(row, self.act) for row in rows)

    @cached_property
    def stem_layers(self) -> tuple[Layer, ...]:
        return self._layers(self.stem)

    @cached_property
    def head_layers(self) -> tuple[Layer, ...]:
        classifier = Op.parse(self.classifier, self.act)
        return self._layers(self.head) + (Layer(classifier, self.num_classes),)

    @cached_property
    def positions(self) -> tuple[Position, ...]:
        stem = Arch(self.stem_layers, self.resolution, self.act).specs()
        channels, h, w = stem[-1].out_shape
        positions = []
        for stage_index, stage in enumerate(self.stages):
            act = stage.act or self.act
            for layer in range(stage.layers):
                tokens = stage.first_ops if (layer == 0 and stage.first_ops) else stage.ops
                optional = stage.min_layers is not None and layer >= stage.min_layers
                if optional and "skip" not in tokens:
                    tokens = (*tokens, "skip")
                try:
                    candidates = tuple(Op.parse(token, act) for token in tokens)
                except BlockStringError as error:
                    raise ConfigError(f"space '{self.name}', stage {stage_index}: {error}") from None
                stride = stage.stride if layer == 0 else 1
                position = Position(len(positions), stage_index, layer, channels, stage.channels, h, w, stride,
                                    candidates, optional)
                positions.append(position)
                channels, h, w = position.specs[0].out_shape
        return tuple(positions)

    def fixed_specs(self) -> tuple[list[BlockSpec], list[BlockSpec]]:
        """Stem and head blocks with their shapes (the same for every architecture of the space)."""
        specs = self.arch([0] * len(self.positions)).specs()
        return specs[: len(self.stem_layers)], specs[len(specs) - len(self.head_layers):]

    def specs(self) -> list[BlockSpec]:
        """Every unique BlockSpec an architecture of this space can contain: what its LUT must hold."""
        stem, head = self.fixed_specs()
        candidates = [spec for position in self.positions for spec in position.specs]
        return list(dict.fromkeys([*stem, *candidates, *head]))

    @property
    def size(self) -> int:
        """Number of distinct choice vectors."""
        total = 1
        for position in self.positions:
            total *= len(position.candidates)
        return total

    # -- architectures ------------------------------------------------------------------------------------
    def arch(self, choices: Sequence[int]) -> Arch:
        """The architecture that takes candidate `choices[i]` at position i."""
        if len(choices) != len(self.positions):
            raise ConfigError(f"space '{self.name}' has {len(self.positions)} positions, got {len(choices)} choices")
        layers = []
        for position, choice in zip(self.positions, choices):
            if not 0 <= choice < len(position.candidates):
                raise ConfigError(f"space '{self.name}' position {position.index}: choice {choice} out of range "
                                  f"0..{len(position.candidates) - 1}")
            layers.append(Layer(position.candidates[choice], position.cout, position.stride))
        return Arch((*self.stem_layers, *layers, *self.head_layers), self.resolution, self.act)

    def choices_of(self, arch: Arch) -> list[int]:
        """Inverse of `arch`: the choice vector, or a ConfigError when the architecture is not in this space."""
        specs = arch.with_resolution(self.resolution).specs()
        stem, head = len(self.stem_layers), len(self.head_layers)
        inner = specs[stem: len(specs) - head]
        if len(inner) != len(self.positions):
            raise ConfigError(f"architecture has {len(inner)} searchable blocks, space '{self.name}' has "
                              f"{len(self.positions)}")
        choices = []
        for position, spec in zip(self.positions, inner):
            if spec not in position.specs:
                raise ConfigError(f"block {spec.key} is not a candidate of space '{self.name}' at position "
                                  f"{position.index}")
            choices.append(position.specs.index(spec))
        return choices

    def sample(self, rng: random.Random) -> Arch:
        """A uniformly random architecture; depth-searched stages drop only trailing layers."""
        return self.arch(self.sample_choices(rng))

    def sample_choices(self, rng: random.Random) -> list[int]:
        """Uniform over candidates; a depth-searched stage first draws its depth uniformly."""
        choices = []
        for stage, positions in zip(self.stages, self.by_stage()):
            depth = stage.layers if stage.min_layers is None else rng.randint(stage.min_layers, stage.layers)
            for position in positions:
                if position.layer >= depth:
                    choices.append(position.skip_index)
                    continue
                options = range(len(position.candidates))
                choices.append(rng.choice([i for i in options if not (position.optional and i == position.skip_index)]))
        return choices

    def by_stage(self) -> Iterator[list[Position]]:
        for stage_index in range(len(self.stages)):
            yield [p for p in self.positions if p.stage == stage_index]
