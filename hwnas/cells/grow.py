"""D-DARTS' larger-network derivation (thesis `ddarts-thesis.txt`, Sec. 4.1.3, Algorithm 2): keep the reduction
cells at 1/3 and 2/3 of the depth and repeat the searched normal cells of each segment until n cells."""

from __future__ import annotations

from hwnas.cells.genotype import Genotype
from hwnas.errors import ConfigError


def grow_indices(searched: int, n: int) -> list[int]:
    """Which searched cell each of the n cells of the larger network copies (Algorithm 2, i = 0..n-1)."""
    if n < searched:
        raise ConfigError(f"Algorithm 2 grows a network: {n} cells < the {searched} searched")
    if n == searched:
        return list(range(n))
    m, m2 = searched // 3, 2 * searched // 3
    if m < 1 or m2 - 1 - m < 1 or searched - 1 - m2 < 1:
        raise ConfigError(f"a {searched}-cell network has no normal cell in some segment between its reductions "
                          f"(cells {m} and {m2}); Algorithm 2 needs at least 5 searched cells")
    indices = []
    for i in range(n):
        if i < n // 3:
            c = i % m
        elif i == n // 3:
            c = m
        elif i < 2 * n // 3:
            c = i % (m2 - 1 - m) + m + 1
        elif i == 2 * n // 3:
            c = m2
        else:
            c = i % (searched - 1 - m2) + m2 + 1
        indices.append(c)
    return indices


def grow_genotype(genotype: Genotype, n: int) -> Genotype:
    """A per-cell genotype (`c0..c{k-1}`) grown to n cells with Algorithm 2."""
    names = genotype.names
    if names != tuple(f"c{i}" for i in range(len(names))):
        raise ConfigError("only a per-cell genotype (c0=...;c1=...) can be grown; a normal/reduce genotype "
                          "builds any depth already")
    return Genotype(tuple((f"c{i}", genotype[f"c{c}"]) for i, c in enumerate(grow_indices(len(names), n))))
