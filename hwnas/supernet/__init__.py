"""Supernets built from search spaces, their mixed layers, and the samplers strategies forward them with."""

from hwnas.supernet.chain import ChainSupernet, Selection
from hwnas.supernet.mixed import MaskedInvertedResidual, MixedLayer, maskable

__all__ = ["ChainSupernet", "MaskedInvertedResidual", "MixedLayer", "Selection", "maskable"]
