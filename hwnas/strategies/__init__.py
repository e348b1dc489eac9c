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

__all__ = ["STRATEGIES", "BaseStrategy", "Derivation", "SearchProblem", "StepContext", "StepOutput", "Strategy",
           "check_strategy", "make_strategy", "space_kind", "strategy_class"]


def __getattr__(name: str) -> Any:
    """The names of hwnas.strategies.base, imported when first asked for (it loads torch)."""
    if name in __all__:
        return getattr(importlib.import_module("hwnas.strategies.base"), name)
    raise AttributeError(f"module 'hwnas.strategies' has no attribute '{name}'")
