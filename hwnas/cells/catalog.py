"""The declared cell search spaces, by name. Each is a `CellSpace` value; see the paper cited per space."""

from __future__ import annotations

from collections.abc import Callable

from hwnas.cells.space import CellSpace
from hwnas.spaces.catalog import declared_space

# DARTS (Liu et al., ICLR 2019), Sec. 3.1.1: 8 candidate operations on the 14 edges of a 4-node cell. The space's
# network is what deploys (and what the LUT prices): DARTS' CIFAR evaluation depth, 20 cells, at the search width
# C=16 (DARTS searched 8 cells at C=16 and evaluated 20 at C=36). Strategies search a smaller proxy.
DARTS_PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                    "dil_conv_3x3", "dil_conv_5x5")

# NAS-Bench-201 (Dong & Yang, ICLR 2020), Sec. 3: 5 operations on the 6 edges of a 4-node cell, C=16, N=5.
NB201_PRIMITIVES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

# DARTOpti's operation set S_o (thesis `ddarts-thesis.txt`, Sec. 4.1.4 and Table 4.1): DARTS' 7 without `none`
# plus conv_3x1_1x3, conv_7x1_1x7, simple_conv_1x1, simple_conv_3x3, bottleneck_1x3x1.
DARTOPTI_PRIMITIVES = ("conv_3x1_1x3", "conv_7x1_1x7", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
                       "simple_conv_1x1", "simple_conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
                       "dil_conv_5x5", "bottleneck_1x3x1")


def darts() -> CellSpace:
    return CellSpace("darts", DARTS_PRIMITIVES, "darts", nodes=4, layers=20, channels=16, resolution=32,
                     description="DARTS (Liu et al. 2019): normal + reduction cell, 4 nodes, 14 edges x 8 ops")


def nb201() -> CellSpace:
    return CellSpace("nb201", NB201_PRIMITIVES, "nb201", nodes=3, layers=15, channels=16, resolution=32,
                     description="NAS-Bench-201 (Dong & Yang 2020): one cell, 4 nodes, 6 edges x 5 ops, 3x5 cells")


def dartopti() -> CellSpace:
    return CellSpace("dartopti", DARTOPTI_PRIMITIVES, "darts", nodes=4, layers=20, channels=16, resolution=32,
                     description="DARTOpti S_o (thesis Sec. 4.1.4): the DARTS cell with 12 operations")


CELL_SPACES: dict[str, Callable[[], CellSpace]] = {"darts": darts, "nb201": nb201, "dartopti": dartopti}


def get_cell_space(name: str, resolution: int | None = None, num_classes: int | None = None) -> CellSpace:
    """A declared cell space by name, optionally at another input resolution or class count."""
    return declared_space(CELL_SPACES, "cell space", name, resolution, num_classes)


def is_cell_space(space: object) -> bool:
    """True for a `CellSpace` (strategies and the search CLI branch on it)."""
    return isinstance(space, CellSpace)


# Published genotypes of the DARTS space, as the DARTS code base (quark0/darts, genotypes.py) writes them.
PUBLISHED_GENOTYPES = {
    "darts_v1": "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
                "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
                "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 0), "
                "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('avg_pool_3x3', 0)])",
    "darts_v2": "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
                "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
                "reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), "
                "('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)])",
}


def published_cell_archs(space: CellSpace) -> list[tuple[str, object]]:
    """The published genotypes that fit `space` (DARTS V1/V2 in `darts` and `dartopti`), as (name, CellArch) in
    the space's network: what `hwnas lut validate` measures beside random networks of a cell space."""
    from hwnas.cells.genotype import Genotype

    if space.topology != "darts" or space.per_cell:
        return []
    archs = []
    for name, text in PUBLISHED_GENOTYPES.items():
        genotype = Genotype.parse(text)
        if all(op in space.primitives for _, cell in genotype.cells for _, op, _ in cell.edges()):
            archs.append((name, space.arch(genotype)))
    return archs
