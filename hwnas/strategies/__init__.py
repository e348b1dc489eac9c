"""Search strategies: FBNet, ProxylessNAS, HardCoRe-NAS, DenseNAS and the cell strategies, registered in STRATEGIES.

The registry lives here, free of torch, so `hwnas search --help` lists it without loading the library; the other
names are imported from hwnas.strategies.base on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

STRATEGIES: dict[str, str] = {  # name -> "module.path:ClassName" (resolved on use by strategy_class)
    "fbnet": "hwnas.strategies.fbnet:FBNetStrategy",
    "proxyless": "hwnas.strategies.proxyless:ProxylessStrategy",
    "hardcore": "hwnas.strategies.hardcore:HardCoReStrategy",
    "densenas": "hwnas.strategies.densenas:DenseNASStrategy",
    "darts": "hwnas.strategies.darts:DartsStrategy",
    "fairdarts": "hwnas.strategies.fairdarts:FairDartsStrategy",
    "sp-darts": "hwnas.strategies.spdarts:SparseDartsStrategy",
    "ostr": "hwnas.strategies.darts:OStrDartsStrategy",
    "ddarts": "hwnas.strategies.ddarts:DDartsStrategy",
}

# Band draws a search scores inside its supernet after deriving (--candidates), where a strategy's own derivation
# lost to random networks: HardCoRe-NAS on CIFAR-10 at 32 px, -0.027 ± 0.004 without, +0.012 ± 0.008 with 20
# (bench/RESULTS.md). The others keep 0 until measured.
DEFAULT_CANDIDATES: dict[str, int] = {"hardcore": 20}


def candidates_to_select(strategy: str, requested: int | None) -> int:
    """How many band draws the search of `strategy` scores after deriving: `requested`, else the strategy's
    default (DEFAULT_CANDIDATES, 0 where it has none)."""
    return DEFAULT_CANDIDATES.get(strategy, 0) if requested is None else requested


__all__ = ["STRATEGIES", "DEFAULT_CANDIDATES", "candidates_to_select",
           "BaseStrategy", "Derivation", "SearchProblem", "StepContext", "StepOutput", "Strategy",
           "check_strategy", "make_strategy", "space_kind", "strategy_class"]


def __getattr__(name: str) -> Any:
    """The names of hwnas.strategies.base, imported when first asked for (it loads torch)."""
    if name in __all__:
        return getattr(importlib.import_module("hwnas.strategies.base"), name)
    raise AttributeError(f"module 'hwnas.strategies' has no attribute '{name}'")
