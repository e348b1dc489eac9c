"""The strategy protocol and the registry the trainer and `hwnas search` resolve strategy names from.

A strategy owns everything that differs between search methods; the trainer (`hwnas.search.loop`), the run directory
(`hwnas.search.run_folder`), the data (`hwnas.data`) and the latency model (`hwnas.lut`) are shared. A strategy owns:

- its supernet (`self.supernet`, an `nn.Module` it builds from the space: chain, dense or cell supernets alike).
  The trainer optimises `weight_parameters()` with SGD on the weight split and checkpoints `supernet.state_dict()`;
- its architecture parameters (`arch_parameters()`), never seen by the weight optimizer;
- how mixed layers forward (weighted sum, Gumbel sample, binary gates, masks), chosen per call inside
  `weight_loss` and `arch_backward`, never by a class-level switch;
- its latency term (expected latency from the LUT, `expected_latency_ms()`), its loss and its schedules
  (`start_epoch` sets temperatures; `status()` reports them for history.csv and the progress display);
- its architecture step, split in two so the trainer can average gradients across ranks in between:
  `arch_backward(x, y, ctx)` fills `.grad` of `arch_parameters()` from an architecture batch (a split disjoint from
  the weight batch: bilevel), with `ctx` carrying the last weight batch, the weight optimizer and learning rate
  (what DARTS' second-order unrolled step needs); `arch_update()` applies the step (optimizer, Frank-Wolfe, ...);
- `derive() -> Derivation`: a discrete `Arch` whose predicted latency meets the budget, saying whether the
  argmax had to be repaired and how;
- its state for resume: `state_dict()` / `load_state_dict()` (architecture parameters, their optimizer,
  schedules, the sampling generator): a resumed run must end with the same architecture as an uninterrupted one.

Data parallelism: every rank builds the same strategy with the same seed and must draw every architecture sample
from `self.generator` (seeded identically on all ranks), so all ranks compute the same paths, the averaged
gradients are identical, and so are the architecture parameters after each update.

Spaces: `hwnas.spaces.files.resolve_space` finds a space by name (hwnas.spaces.catalog, then hwnas.cells) or YAML file.
Any space kind works with the trainer and CLI when it has `name`, `resolution`, `num_classes` and `specs()` (the
BlockSpecs its LUT must hold) and, unless it is a chain (`hwnas.spaces.chain.Space`) or dense space, a
`latency_range_ms(model) -> (fastest, slowest)`; its `kind` attribute names it for `space_kinds`.

Optional hooks the trainer and run directory call when a strategy defines them: `should_stop() -> bool` after
each epoch (early stop), `write_plots(folder)` at the end (the strategy's own diagnostics).

Register a strategy by adding `"name": "module.path:ClassName"` to STRATEGIES (hwnas/strategies/__init__.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from hwnas.arch import Arch
from hwnas.budget.projection import DerivationMethod
from hwnas.config import parse_params
from hwnas.errors import ConfigError
from hwnas.lut.model import LatencyModel
from hwnas.registry import resolve
from hwnas.strategies import STRATEGIES


@dataclass(frozen=True)
class SearchProblem:
    """What every strategy is built from."""

    space: Any  # hwnas.spaces.chain.Space, hwnas.spaces.dense.DenseSpace, or a kind another module defines
    latency: LatencyModel  # the device's LUT (calibrated)
    budget_ms: float  # the latency budget on that device
    seed: int = 0  # seeds the supernet weights and the architecture sampling generator (same on every rank)
    budget_floor: float = 0.0  # derive() fills an argmax predicted below this share of the budget (0: never)


@dataclass
class StepOutput:
    """A weight step's loss (to backpropagate), the logits (for accuracy) and numbers to report."""

    loss: torch.Tensor
    logits: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class StepContext:
    """What an architecture step may need from the weight side (bilevel, second-order unrolling)."""

    weight_batch: tuple[torch.Tensor, torch.Tensor]
    weight_optimizer: torch.optim.Optimizer
    weight_lr: float
    epoch: int
    step: int


@dataclass(frozen=True)
class Derivation:
    """The searched architecture: predicted latency within the budget, and how it was obtained."""

    arch: Arch
    predicted_ms: float
    argmax_ms: float  # predicted latency of the strategy's unconstrained choice
    budget_ms: float
    method: DerivationMethod  # how it was reached from the argmax (no step: the argmax met the budget)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def repaired(self) -> bool:
        return self.method.repaired

    def describe(self) -> str:
        selection = self.detail.get("selection")
        picked = "" if selection is None else (
            f"; best of {selection['candidates']} band networks scored in the supernet: accuracy "
            f"{selection['chosen_acc']:.4f} (the derived one {selection['derived_acc']:.4f})")
        method = self.method.without("select")
        if not method.steps:
            return (f"argmax meets the budget: {self.argmax_ms:.4g} ms <= {self.budget_ms:.4g} ms{picked}; "
                    f"predicted {self.predicted_ms:.4g} ms")
        if self.argmax_ms > self.budget_ms:
            return (f"argmax predicted {self.argmax_ms:.4g} ms > budget {self.budget_ms:.4g} ms; repaired by "
                    f"{method} projection{picked}; predicted {self.predicted_ms:.4g} ms")
        return (f"argmax predicted {self.argmax_ms:.4g} ms, under the budget floor; filled ({method}){picked}; "
                f"predicted {self.predicted_ms:.4g} ms of {self.budget_ms:.4g} ms")


@runtime_checkable
class Strategy(Protocol):
    """The face the trainer and the CLI use (see the module docstring for what each part owns)."""

    name: ClassVar[str]
    space_kinds: ClassVar[tuple[str, ...]]  # 'chain', 'dense', 'cell', ...
    problem: SearchProblem  # what it searches under (the trainer stamps each epoch with its budget)
    supernet: nn.Module

    def weight_parameters(self) -> list[nn.Parameter]: ...
    def arch_parameters(self) -> list[torch.Tensor]: ...
    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None: ...
    def weight_loss(self, x: torch.Tensor, y: torch.Tensor) -> StepOutput: ...
    def arch_backward(self, x: torch.Tensor, y: torch.Tensor, ctx: StepContext) -> dict[str, float]: ...
    def arch_update(self) -> None: ...
    def eval_logits(self, x: torch.Tensor) -> torch.Tensor: ...
    def expected_latency_ms(self) -> float: ...
    def status(self) -> dict[str, float]: ...
    def arch_weights(self) -> list[tuple[str, np.ndarray]]: ...
    def derive(self) -> Derivation: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


def space_kind(space: Any) -> str:
    """'chain' for hwnas.spaces.chain.Space, else the space's own `kind` attribute."""
    from hwnas.spaces.chain import Space

    return "chain" if isinstance(space, Space) else str(getattr(space, "kind", type(space).__name__))


def strategy_class(name: str) -> type:
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy '{name}' (known: {', '.join(STRATEGIES)})")
    return resolve(STRATEGIES[name])


def check_strategy(name: str, params: Mapping[str, Any] | None, space: Any) -> type:
    """The class of strategy `name` once its parameters (keys, types, values) and the kind of `space` are accepted:
    what a search can refuse before it loads data, measures blocks or writes its run folder."""
    cls = strategy_class(name)
    kind = space_kind(space)
    if kind not in cls.space_kinds:
        raise ConfigError(f"strategy '{name}' searches {'/'.join(cls.space_kinds)} spaces; space "
                          f"'{getattr(space, 'name', kind)}' is a {kind} space")
    cls.read_params(params or {})
    return cls


def make_strategy(name: str, problem: SearchProblem, params: Mapping[str, Any] | None = None) -> Strategy:
    """Build strategy `name` for `problem`, refusing a space kind it cannot search."""
    return check_strategy(name, params, problem.space)(problem, dict(params or {}))


class TradeoffController:
    """Keeps a soft latency penalty's coefficient c tracking the budget T: log c += rate · (E[LAT]/T − 1) after
    each architecture step, clipped to [low, high]. Soft methods (FBNet, ProxylessNAS, DenseNAS) have no budget of
    their own; this dual-ascent rule stands in for tuning their trade-off coefficient by hand per budget."""

    def __init__(self, value: float, rate: float, low: float, high: float, enabled: bool):
        self.value, self.rate, self.low, self.high, self.enabled = value, rate, low, high, enabled

    def update(self, expected_ms: float, budget_ms: float) -> None:
        if self.enabled:
            self.value = float(np.clip(self.value * np.exp(self.rate * (expected_ms / budget_ms - 1)), self.low,
                                       self.high))

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: Mapping[str, float]) -> None:
        self.value = float(state["value"])


class BaseStrategy:
    """Shared plumbing: parameters from a `Params` dataclass, the sampling generator, the architecture optimizer,
    schedules and state for resume. Subclasses set `name`, `space_kinds`, `Params` and the method itself."""

    name: ClassVar[str] = ""
    space_kinds: ClassVar[tuple[str, ...]] = ("chain",)
    Params: ClassVar[type]

    def __init__(self, problem: SearchProblem, params: Mapping[str, Any]):
        self.problem = problem
        self.params = self.read_params(params)
        self.generator = torch.Generator().manual_seed(problem.seed * 7919 + 17)
        self.epoch, self.epochs, self.warmup = 0, 1, True
        self.arch_optimizer: torch.optim.Optimizer | None = None
        self.supernet: nn.Module

    @classmethod
    def read_params(cls, params: Mapping[str, Any]) -> Any:
        """The strategy's `Params` from a mapping: unknown keys, wrong types and unusable values refused (one line)."""
        parsed = parse_params(cls.Params, dict(params), f"strategy '{cls.name}' parameters")
        cls.check_params(parsed)
        return parsed

    @classmethod
    def check_params(cls, params: Any) -> None:
        """Refuse values the method cannot use (its choices, positive rates); subclasses with such limits override."""

    # -- parameters ---------------------------------------------------------------------------------------
    def arch_parameters(self) -> list[torch.Tensor]:
        raise NotImplementedError

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.supernet.parameters() if p.requires_grad]

    def start_epoch(self, epoch: int, epochs: int, warmup: bool) -> None:
        self.epoch, self.epochs, self.warmup = epoch, epochs, warmup

    def arch_update(self) -> None:
        if self.arch_optimizer is not None:
            self.arch_optimizer.step()

    def status(self) -> dict[str, float]:
        return {}

    # -- resume -------------------------------------------------------------------------------------------
    def extra_state(self) -> dict[str, Any]:
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        del state

    def state_dict(self) -> dict[str, Any]:
        return {"arch": [t.detach().clone() for t in self.arch_parameters()],
                "optimizer": self.arch_optimizer.state_dict() if self.arch_optimizer is not None else None,
                "generator": self.generator.get_state(), "epoch": self.epoch, "extra": self.extra_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for target, value in zip(self.arch_parameters(), state["arch"]):
                target.copy_(value)
        if self.arch_optimizer is not None and state.get("optimizer") is not None:
            self.arch_optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.epoch = int(state.get("epoch", 0))
        self.load_extra_state(state.get("extra", {}))


def set_arch_grads(params: Sequence[torch.Tensor], loss: torch.Tensor) -> None:
    """Add d loss / d params to `.grad` without computing the supernet weights' gradients (an architecture step
    updates only the architecture)."""
    grads = torch.autograd.grad(loss, list(params), allow_unused=True)
    for param, grad in zip(params, grads):
        if grad is None:
            continue
        param.grad = grad.detach() if param.grad is None else param.grad + grad.detach()
