"""DenseNAS's densely connected search space (Fang et al., CVPR 2020) as data: routing blocks of growing width,
each connected to its next `connections` blocks, so block widths and counts are searched through routing paths.

Node 0 is the stem's output; nodes 1..N are routing blocks; node N+1 is the final 1x1 convolution. An edge i->j
carries block j's shape-alignment layer (candidates `align_ops`, stride 1 or 2) from node i; routing block j then
stacks `layers` basic layers (candidates `stack_ops`, skip included). A discrete architecture is a path
0 -> ... -> N+1 with one op per alignment layer and per basic layer, written as an ordinary chain `Arch`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cached_property

from hwnas.arch import Arch, Layer
from hwnas.blocks import BlockSpec, BlockStringError, Op
from hwnas.errors import ConfigError
from hwnas.spaces.chain import expand_choices


@dataclass(frozen=True)
class RoutingBlock:
    """A routing block: output `channels` at feature size resolution / 2**level, in `stage`, with `layers` basic
    layers after its alignment layer."""

    channels: int
    level: int
    stage: int
    layers: int


@dataclass(frozen=True)
class Edge:
    """Routing edge src -> dst with the alignment layer's candidate blocks."""

    index: int
    src: int
    dst: int
    stride: int
    candidates: tuple[BlockSpec, ...]


@dataclass(frozen=True)
class DenseChoice:
    """A discrete architecture of a dense space: the node path, one op per edge on it, ops per basic layer."""

    path: tuple[int, ...]  # node ids from 0 to N+1
    edge_ops: tuple[int, ...]  # per edge of the path, index into that edge's candidates
    layer_ops: tuple[tuple[int, ...], ...]  # per routing block on the path (path[1:-1]), per basic layer


@dataclass(frozen=True)
class DenseSpace:
    """A densely connected space; `arch(choice)` is the chain network of one path."""

    name: str
    stem: tuple[str, ...]
    blocks: tuple[RoutingBlock, ...]
    align_ops: tuple[str, ...]
    stack_ops: tuple[str, ...]
    last: str  # the final 1x1 convolution row, e.g. cn_k1_c1984
    last_stage: int
    connections: int = 4  # each block feeds its next `connections` blocks (DenseNAS's adjoin_connect_nums)
    classifier: str = "fc"
    num_classes: int = 1000
    resolution: int = 224
    act: str = "relu6"
    description: str = ""

    kind = "dense"

    def with_resolution(self, resolution: int) -> DenseSpace:
        return replace(self, resolution=resolution)

    def with_classes(self, num_classes: int) -> DenseSpace:
        return replace(self, num_classes=num_classes)

    # -- structure ----------------------------------------------------------------------------------------
    @cached_property
    def stem_layers(self) -> tuple[Layer, ...]:
        return tuple(Layer.parse(row, self.act) for row in self.stem)

    @cached_property
    def last_layer(self) -> Layer:
        return Layer.parse(self.last, self.act)

    @cached_property
    def classifier_layer(self) -> Layer:
        return Layer(Op.parse(self.classifier, self.act), self.num_classes)

    @cached_property
    def stem_specs(self) -> tuple[BlockSpec, ...]:
        return tuple(Arch(self.stem_layers, self.resolution, self.act).specs())

    @property
    def num_nodes(self) -> int:
        return len(self.blocks) + 2

    @cached_property
    def node_shapes(self) -> tuple[tuple[int, int], ...]:
        """(channels, feature size) per node."""
        channels, size, _ = self.stem_specs[-1].out_shape
        shapes = [(channels, size)]
        for block in self.blocks:
            shapes.append((block.channels, math.ceil(self.resolution / 2 ** block.level)))
        shapes.append((self.last_layer.channels, shapes[-1][1]))
        return tuple(shapes)

    def _node_stage(self, node: int) -> int:
        if node == 0:
            return 0
        return self.blocks[node - 1].stage if node <= len(self.blocks) else self.last_stage

    def _candidates(self, tokens: Sequence[str]) -> tuple[Op, ...]:
        try:
            return tuple(Op.parse(token, self.act) for token in tokens)
        except BlockStringError as error:
            raise ConfigError(f"space '{self.name}': {error}") from None

    @cached_property
    def edges(self) -> tuple[Edge, ...]:
        """DenseNAS's wiring: i feeds its next `connections` nodes while the stage advances by at most one and the
        feature size halves at most once (the first that breaks the rule ends i's fan-out)."""
        align = self._candidates(self.align_ops)
        last_op = self.last_layer.op
        edges = []
        final = self.num_nodes - 1
        for src in range(final):
            for dst in range(src + 1, min(src + self.connections, final) + 1):
                if self._node_stage(dst) - self._node_stage(src) > 1:
                    break
                (cin, size), (cout, out_size) = self.node_shapes[src], self.node_shapes[dst]
                ratio = size / out_size
                if ratio not in (1, 2) and not (ratio > 1 and math.ceil(size / 2) == out_size):
                    break
                stride = 1 if size == out_size else 2
                ops = (last_op,) if dst == final else align
                specs = tuple(BlockSpec(op, cin, cout, size, size, stride) for op in ops)
                edges.append(Edge(len(edges), src, dst, stride, specs))
        reachable = {0}
        for edge in edges:
            if edge.src in reachable:
                reachable.add(edge.dst)
        if final not in reachable:
            raise ConfigError(f"space '{self.name}': no routing path reaches the final layer")
        return tuple(edges)

    def out_edges(self, node: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.src == node)

    def in_edges(self, node: int) -> tuple[Edge, ...]:
        return tuple(e for e in self.edges if e.dst == node)

    def edge(self, src: int, dst: int) -> Edge:
        for e in self.edges:
            if e.src == src and e.dst == dst:
                return e
        raise ConfigError(f"space '{self.name}': no edge {src}->{dst}")

    @cached_property
    def layer_specs(self) -> tuple[tuple[BlockSpec, ...], ...]:
        """Per routing block (node 1..N): the candidate specs of its basic layers (all its layers share a shape)."""
        stack = self._candidates(self.stack_ops)
        result = []
        for node in range(1, self.num_nodes - 1):
            channels, size = self.node_shapes[node]
            result.append(tuple(BlockSpec(op, channels, channels, size, size, 1) for op in stack))
        return tuple(result)

    def classifier_spec(self) -> BlockSpec:
        channels, size = self.node_shapes[-1]
        return BlockSpec(self.classifier_layer.op, channels, self.num_classes, size, size, 1)

    def fixed_specs(self) -> tuple[list[BlockSpec], list[BlockSpec]]:
        """Stem and classifier: the same in every architecture (the final 1x1 conv depends on its input edge)."""
        return list(self.stem_specs), [self.classifier_spec()]

    def specs(self) -> list[BlockSpec]:
        """Every unique BlockSpec an architecture of this space can contain: what its LUT must hold."""
        stem, head = self.fixed_specs()
        edge_specs = [spec for edge in self.edges for spec in edge.candidates]
        layer_specs = [spec for specs in self.layer_specs for spec in specs]
        return list(dict.fromkeys([*stem, *edge_specs, *layer_specs, *head]))

    # -- architectures ------------------------------------------------------------------------------------
    def arch(self, choice: DenseChoice) -> Arch:
        """The chain network of a path: stem, per routing block its alignment layer and basic layers, final conv."""
        path = choice.path
        if path[0] != 0 or path[-1] != self.num_nodes - 1:
            raise ConfigError(f"space '{self.name}': a path runs from node 0 to {self.num_nodes - 1}, got {path}")
        if len(choice.edge_ops) != len(path) - 1 or len(choice.layer_ops) != len(path) - 2:
            raise ConfigError(f"space '{self.name}': choice sizes do not match path {path}")
        layers = list(self.stem_layers)
        for step, (src, dst) in enumerate(zip(path, path[1:])):
            edge = self.edge(src, dst)
            spec = edge.candidates[choice.edge_ops[step]]
            layers.append(Layer(spec.op, spec.cout, spec.stride))
            if dst < self.num_nodes - 1:
                specs = self.layer_specs[dst - 1]
                ops = choice.layer_ops[step]
                if len(ops) != self.blocks[dst - 1].layers:
                    raise ConfigError(f"space '{self.name}': block {dst} has {self.blocks[dst - 1].layers} layers")
                layers.extend(Layer(specs[i].op, specs[i].cout) for i in ops)
        layers.append(self.classifier_layer)
        return Arch(tuple(layers), self.resolution, self.act)

    def choices_of(self, arch: Arch) -> DenseChoice:
        """Inverse of `arch`: the path and ops of an architecture of this space, or a ConfigError."""
        specs = arch.with_resolution(self.resolution).specs()
        stem = len(self.stem_specs)
        if list(specs[:stem]) != list(self.stem_specs) or specs[-1] != self.classifier_spec():
            raise ConfigError(f"architecture does not have the stem and classifier of space '{self.name}'")
        final = self.num_nodes - 1

        def walk(node: int, index: int) -> DenseChoice | None:
            for edge in self.out_edges(node):
                if index >= len(specs) or specs[index] not in edge.candidates:
                    continue
                op = edge.candidates.index(specs[index])
                if edge.dst == final:
                    if index + 2 == len(specs):
                        return DenseChoice((node, final), (op,), ())
                    continue
                count = self.blocks[edge.dst - 1].layers
                layer = specs[index + 1: index + 1 + count]
                options = self.layer_specs[edge.dst - 1]
                if len(layer) < count or any(s not in options for s in layer):
                    continue
                rest = walk(edge.dst, index + 1 + count)
                if rest is not None:
                    return DenseChoice((node, *rest.path), (op, *rest.edge_ops),
                                       (tuple(options.index(s) for s in layer), *rest.layer_ops))
            return None

        choice = walk(0, stem)
        if choice is None:
            raise ConfigError(f"architecture is not a routing path of space '{self.name}'")
        return choice

    def sample_choice(self, rng: random.Random) -> DenseChoice:
        """A random architecture: uniform next block at every node, uniform ops."""
        path, node = [0], 0
        while node != self.num_nodes - 1:
            node = rng.choice(self.out_edges(node)).dst
            path.append(node)
        edge_ops = tuple(rng.randrange(len(self.edge(a, b).candidates)) for a, b in zip(path, path[1:]))
        layer_ops = tuple(tuple(rng.randrange(len(self.layer_specs[n - 1])) for _ in range(self.blocks[n - 1].layers))
                          for n in path[1:-1])
        return DenseChoice(tuple(path), edge_ops, layer_ops)

    def sample(self, rng: random.Random) -> Arch:
        return self.arch(self.sample_choice(rng))


DENSENAS_MB = expand_choices("ir_k3|5|7_e3|6")


def densenas() -> DenseSpace:
    """DenseNAS-MobileNetV2 (Fang et al. 2020, search config `imagenet_search_cfg_mbv2.yaml`): 16 routing blocks
    of widths 24..384, each fed by up to 4 predecessors, 3 basic layers (MBConv k3/5/7 x e3/6 or skip) per block
    in stages 1-5, final 1x1 conv to 1984."""
    widths = (24, 32, 40, 48, 56, 64, 72, 96, 112, 128, 160, 176, 192, 320, 352, 384)
    levels = (2, 3, 3, 3, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5)
    stages = (1, 2, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6)
    layers = (3,) * 13 + (0,) * 3
    return DenseSpace(
        name="densenas",
        stem=("cn_k3_s2_c16", "ds_k3_c16"),
        blocks=tuple(RoutingBlock(c, lv, st, n) for c, lv, st, n in zip(widths, levels, stages, layers)),
        align_ops=DENSENAS_MB,
        stack_ops=(*DENSENAS_MB, "skip"),
        last="cn_k1_c1984",
        last_stage=7,
        connections=4,
        act="relu6",
        description="DenseNAS (Fang et al. 2020): 16 densely connected routing blocks, widths 24-384, "
                    "3 basic layers each (MBConv k3/5/7 x e3/6 or skip)",
    )
