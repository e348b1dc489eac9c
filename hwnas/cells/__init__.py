"""Cell-based search spaces (DARTS, NAS-Bench-201, DARTOpti): genotypes, discrete networks, supernets.

Importing the package registers the cell operations as block types, as `hwnas.blocks` does its built-ins.
"""

from hwnas.cells.blocks import PRIMITIVE_TOKENS, primitive_op, primitive_spec, register_cell_block_types

register_cell_block_types()

from hwnas.cells.catalog import CELL_SPACES, get_cell_space, is_cell_space, published_cell_archs  # noqa: E402
from hwnas.cells.genotype import CellGenotype, Genotype  # noqa: E402
from hwnas.cells.network import CellArch  # noqa: E402
from hwnas.cells.space import CellSlot, CellSpace  # noqa: E402

__all__ = ["CELL_SPACES", "PRIMITIVE_TOKENS", "CellArch", "CellGenotype", "CellSlot", "CellSpace", "Genotype",
           "get_cell_space", "is_cell_space", "primitive_op", "primitive_spec", "published_cell_archs",
           "register_cell_block_types"]
