"""Discrete cells as data: which operation each kept edge applies to which earlier state, per intermediate node.

States are numbered as in DARTS (Liu et al. 2019): the cell inputs first (0 = c_{k-2}, 1 = c_{k-1}; NAS-Bench-201
has the single input 0), then the intermediate nodes in order. A cell's string is NAS-Bench-201's
(`|nor_conv_3x3~0|+|skip_connect~0|avg_pool_3x3~1|`): one `|op~input|...|` group per node, joined by `+`.
A whole genotype names its cells: `normal=...;reduce=...` (DARTS), `cell=...` (NAS-Bench-201),
`c0=...;c1=...` (D-DARTS, one per network cell).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from hwnas.errors import ConfigError

Edge = tuple[str, int]  # (operation, input state)
_SOURCE = re.compile(r"[0-9]{1,6}")  # an input state as a genotype string writes it (ASCII digits: int() reads them)


@dataclass(frozen=True)
class CellGenotype:
    """One discrete cell: for each intermediate node, the (operation, input state) pairs it sums."""

    nodes: tuple[tuple[Edge, ...], ...]

    def to_string(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{source}" for op, source in node) + "|" for node in self.nodes)

    __str__ = to_string

    @classmethod
    def parse(cls, text: str) -> CellGenotype:
        nodes = []
        for group in text.strip().split("+"):
            edges = []
            for item in filter(None, group.strip().strip("|").split("|")):
                op, sep, source = item.partition("~")
                if not sep or not _SOURCE.fullmatch(source) or not op:
                    raise ConfigError(f"cell '{text[:60]}': '{item}' is not OP~INPUT (e.g. sep_conv_3x3~0)")
                edges.append((op, int(source)))
            nodes.append(tuple(edges))
        return cls(tuple(nodes))

    def edges(self) -> Iterator[tuple[int, str, int]]:
        """(node index, operation, input state) of every kept edge."""
        for node, edges in enumerate(self.nodes):
            for op, source in edges:
                yield node, op, source

    def count(self, op: str) -> int:
        return sum(1 for _, name, _ in self.edges() if name == op)

    def to_json(self) -> list[list[list[Any]]]:
        return [[[op, source] for op, source in node] for node in self.nodes]

    @classmethod
    def from_json(cls, data: list) -> CellGenotype:
        try:
            return cls(tuple(tuple((str(op), _source(source)) for op, source in node) for node in data))
        except (TypeError, ValueError, OverflowError):
            raise ConfigError("a cell in JSON is a list of nodes, each a list of [op, input] pairs (input: a state "
                              "number >= 0)") from None


@dataclass(frozen=True)
class Genotype:
    """Named discrete cells of a network: `normal`/`reduce`, `cell`, or `c0..c{n-1}` for per-cell search."""

    cells: tuple[tuple[str, CellGenotype], ...]

    def __getitem__(self, name: str) -> CellGenotype:
        for key, cell in self.cells:
            if key == name:
                return cell
        raise ConfigError(f"genotype has no cell '{name}' (it has {', '.join(self.names)})")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.cells)

    def to_string(self) -> str:
        return ";".join(f"{name}={cell.to_string()}" for name, cell in self.cells)

    __str__ = to_string

    @classmethod
    def parse(cls, text: str) -> Genotype:
        """Our `name=cell;...` form, or the `Genotype(normal=[('sep_conv_3x3', 0), ...], ...)` repr of the
        DARTS code base (read with a regular expression, never evaluated)."""
        text = text.strip()
        if text.startswith("Genotype("):
            return _parse_darts_repr(text)
        cells = []
        for part in filter(None, text.split(";")):
            name, sep, body = part.partition("=")
            if not sep or not re.fullmatch(r"[a-z][a-z0-9]*", name.strip()):
                raise ConfigError(f"genotype '{text[:60]}': '{part[:40]}' is not NAME=CELL (e.g. normal=|op~0|...)")
            cells.append((name.strip(), CellGenotype.parse(body)))
        if not cells:
            raise ConfigError("empty genotype (expected e.g. normal=|sep_conv_3x3~0|...;reduce=...)")
        return cls(tuple(cells))

    def to_json(self) -> dict[str, Any]:
        return {"genotype": self.to_string(), "cells": {name: cell.to_json() for name, cell in self.cells}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Genotype:
        if "genotype" in data:
            return cls.parse(data["genotype"])
        if isinstance(data.get("cells"), Mapping):
            return cls(tuple((str(name), CellGenotype.from_json(cell)) for name, cell in data["cells"].items()))
        raise ConfigError("genotype JSON needs a 'genotype' string or a 'cells' mapping")

    def count(self, op: str) -> int:
        return sum(cell.count(op) for _, cell in self.cells)


_PAIR = re.compile(r"\(\s*'([a-z0-9_]+)'\s*,\s*([0-9]{1,6})\s*\)")


def _source(value: Any) -> int:
    """An input state number from JSON: an integer >= 0 (ValueError otherwise: states count from 0)."""
    source = int(value)
    if source < 0:
        raise ValueError(value)
    return source


def _parse_darts_repr(text: str) -> Genotype:
    cells = []
    for name in ("normal", "reduce"):
        match = re.search(rf"\b{name}\s*=\s*\[(.*?)\]", text, re.S)
        if not match:
            raise ConfigError(f"DARTS genotype repr without '{name}=[...]': {text[:60]}")
        pairs = [(op, int(source)) for op, source in _PAIR.findall(match[1])]
        if len(pairs) % 2:
            raise ConfigError(f"DARTS genotype '{name}' has {len(pairs)} edges; DARTS keeps 2 per node")
        cells.append((name, CellGenotype(tuple(tuple(pairs[i:i + 2]) for i in range(0, len(pairs), 2)))))
    return Genotype(tuple(cells))
