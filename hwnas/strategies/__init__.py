"""Search strategies: FBNet, ProxylessNAS, HardCoRe-NAS, DenseNAS (and others registered in STRATEGIES)."""

from hwnas.strategies.base import (
    STRATEGIES,
    BaseStrategy,
    Derivation,
    SearchProblem,
    StepContext,
    StepOutput,
    Strategy,
    make_strategy,
    space_kind,
    strategy_class,
)

__all__ = ["STRATEGIES", "BaseStrategy", "Derivation", "SearchProblem", "StepContext", "StepOutput", "Strategy",
           "make_strategy", "space_kind", "strategy_class"]
