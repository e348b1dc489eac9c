"""`run_search`: one search from config to run directory (profile what the LUT lacks, check the budget, train the
supernet with the strategy, checkpoint every epoch, derive an architecture within budget, plot)."""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hwnas.config import SearchConfig, check_search_config, override, to_dict
from hwnas.distributed import Ranks, broadcast_state, check_arch_identical, init_ranks, resolve_device
from hwnas.errors import ConfigError, HwnasError
from hwnas.ops import zero_init_residual_branches
from hwnas.search.device_model import open_latency_model
from hwnas.search.loop import EpochRecord, SearchLoop
from hwnas.search.rng import rng_state, seed_everything, set_rng_state
from hwnas.search.run_folder import SPLITS, RunDir, RunRecord
from hwnas.strategies import candidates_to_select
from hwnas.strategies.base import Derivation, SearchProblem, check_strategy, make_strategy
from hwnas.training import make_weight_optimizer
from hwnas.units import within_budget


class Reporter(Protocol):
    """Progress callbacks (the CLI draws a live display; benchmarks and tests stay silent)."""

    def profiling(self, total: int) -> None: ...
    def profiled(self, key: str, measured: bool) -> None: ...
    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None: ...
    def epoch_finished(self, record: EpochRecord) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter(Reporter):
    """Reports nothing (the protocol's methods do nothing)."""


@dataclass
class SearchResult:
    run_dir: Path
    config: SearchConfig
    derivation: Derivation
    range_ms: tuple[float, float]
    history: list[dict[str, Any]]
    summary: dict[str, Any]


class SearchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search; its message says which epoch the checkpoint holds and how to resume."""

    def __init__(self, run_dir: Path, epoch: int | None, epochs: int):
        super().__init__()
        self.run_dir, self.epoch, self.epochs = run_dir, epoch, epochs  # epoch: the last one saved (None: none yet)

    def __str__(self) -> str:
        if self.epoch is None:
            return (f"search interrupted before its first epoch was saved: nothing to resume in {self.run_dir}; run "
                    "the same command again to start over")
        return (f"search interrupted: {self.run_dir}/supernet.pt holds it after epoch {self.epoch + 1} of "
                f"{self.epochs}; resume with `hwnas search --out {shlex.quote(str(self.run_dir))} --resume`")


def run_search(config: SearchConfig | None, out: str | Path, *, resume: bool = False, epochs: int | None = None,
               select_candidates: int | None = None, reporter: Reporter | None = None,
               space: Any = None) -> SearchResult:
    """Search per `config` into run directory `out`; with `resume`, continue the run saved there (`epochs` may
    extend it, and `select_candidates` re-derives a finished one with a supernet selection of that size).

    The configuration (counts, budget, strategy, its parameters, the space kind) is checked before any data is
    loaded, any block measured or the run folder written. Ctrl-C raises `SearchInterrupted`.
    `space` (library use) searches that space object instead of resolving `config.space` by name; pass the same
    object again to resume."""
    run = RunDir(out)
    config, state = _requested_config(config, run, resume, epochs, select_candidates)
    space = _checked_space(config, space)
    interrupted = SearchInterrupted(run.path, None if state is None else int(state["epoch"]), config.epochs)
    try:
        search = _prepare(config, run, state, space, reporter or SilentReporter())
        _train(search, interrupted)
        return _finish(search)
    except KeyboardInterrupt:
        raise interrupted from None


@dataclass
class _PreparedSearch:
    """A checked search ready to train: what the training loop and the finish step share."""

    config: SearchConfig  # budget_ms and lut resolved
    run: RunDir
    space: Any  # with the data's classes
    splits: dict[str, Any]
    lut_path: Path
    range_ms: tuple[float, float]
    strategy: Any
    optimizer: torch.optim.Optimizer
    ranks: Ranks
    device: torch.device
    reporter: Reporter
    started: float  # time.perf_counter() when the search began
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # history.csv's rows, resumed ones included


def _requested_config(config: SearchConfig | None, run: RunDir, resume: bool, epochs: int | None,
                      select_candidates: int | None) -> tuple[SearchConfig, dict[str, Any] | None]:
    """The checked configuration (the run's own when resuming, with `epochs` and `select_candidates` applied) and
    the checkpoint to resume from (None for a new search)."""
    state = None
    if resume:
        config = run.config()
        state = run.load_checkpoint()
        done = int(state["epoch"]) + 1
        if epochs is not None and epochs < done:
            raise ConfigError(f"{run.path} already ran {done} epochs; --epochs {epochs} cannot shorten it")
    elif config is None:
        raise HwnasError("run_search needs a config unless resuming")
    config = override(config, epochs=epochs, select_candidates=select_candidates)
    check_search_config(config)
    return config, state


def _checked_space(config: SearchConfig, space: Any) -> Any:
    """The space to search at the data's resolution (`space` when given, else `config.space` resolved), once the
    strategy has accepted its kind and parameters."""
    from hwnas.spaces.files import resolve_space

    resolution = config.data.resolution
    space = resolve_space(config.space, resolution) if space is None else space.with_resolution(resolution)
    check_strategy(config.strategy, config.strategy_params, space)
    return space


def _prepare(config: SearchConfig, run: RunDir, state: dict[str, Any] | None, space: Any,
             reporter: Reporter) -> _PreparedSearch:
    """Data, latency model, budget, strategy and run folder, the supernet on its device with its optimizer, and the
    checkpoint `state` restored when resuming."""
    from hwnas.budget.costs import space_range_ms
    from hwnas.data import load_splits
    from hwnas.units import resolve_budget_ms

    resume = state is not None
    ranks = init_ranks()
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    data = config.data
    splits = load_splits(data.source, data.resolution, ("train_weights", "train_arch", "val"),
                         **data.load_options())
    space = space.with_classes(splits["train_weights"].num_classes)
    model, lut_path = open_latency_model(config, space, ranks, reporter)
    range_ms = space_range_ms(space, model)
    budget_ms = config.budget_ms if (resume and config.budget_ms) else resolve_budget_ms(config.budget, range_ms)
    config = replace(config, budget_ms=budget_ms, lut=str(lut_path))
    seed_everything(config.seed)
    problem = SearchProblem(space, model, budget_ms, config.seed, config.budget_floor)
    strategy = make_strategy(config.strategy, problem, config.strategy_params)
    _create_run_folder(run, config, resume, ranks)
    if config.zero_init_residual:
        zero_init_residual_branches(strategy.supernet)
    device = resolve_device(config.torch_device, ranks)
    strategy.supernet.to(device)
    optimizer = make_weight_optimizer(strategy.weight_parameters(), config.weight_lr, config.weight_momentum,
                                      config.weight_decay)
    search = _PreparedSearch(config, run, space, splits, lut_path, range_ms, strategy, optimizer, ranks, device,
                             reporter, started)
    if state is not None:
        _restore(search, state)
    broadcast_state(strategy.supernet, ranks)
    return search


def _create_run_folder(run: RunDir, config: SearchConfig, resume: bool, ranks: Ranks) -> None:
    """config.yaml and splits.json, written once the strategy accepted the space, so a refusal leaves no run folder
    behind."""
    if ranks.is_main:
        from hwnas.data import split_record

        data = config.data
        run.create(config, resume)
        run.write_json(SPLITS, split_record(data.source, data.resolution, **data.split_options()))
    ranks.barrier()


def _restore(search: _PreparedSearch, state: dict[str, Any]) -> None:
    """The checkpoint's supernet, strategy, optimizer and RNG states, epoch and history (history.csv rewritten from
    it)."""
    search.strategy.supernet.load_state_dict(state["supernet"])
    search.strategy.load_state_dict(state["strategy"])
    search.optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["rng"])
    search.start_epoch = int(state["epoch"]) + 1
    search.history = list(state.get("history", []))
    if search.ranks.is_main:
        search.run.write_history(search.history)
        search.reporter.note(f"resuming {search.run.path} after epoch {search.start_epoch} of {search.config.epochs}")


def _train(search: _PreparedSearch, interrupted: SearchInterrupted) -> None:
    """The epochs from `start_epoch` on, each saved as a checkpoint (which carries the history) and then a row of
    history.csv, so a kill loses neither; `interrupted.epoch` follows the last epoch saved."""
    config = search.config
    splits, reporter, ranks = search.splits, search.reporter, search.ranks
    loop = SearchLoop(strategy=search.strategy, weights=splits["train_weights"], arch=splits["train_arch"],
                      val=splits["val"], optimizer=search.optimizer, epochs=config.epochs,
                      warmup_epochs=config.warmup_epochs, batch_size=config.data.batch_size,
                      base_lr=config.weight_lr, seed=config.seed, grad_clip=config.grad_clip, ranks=ranks,
                      device=search.device, on_step=reporter.step)

    def finish_epoch(record: EpochRecord) -> None:
        search.history.append(record.row())
        if ranks.is_main:
            search.run.save_checkpoint(_checkpoint(search, record.epoch))
            interrupted.epoch = record.epoch  # what a Ctrl-C from now on reports
            search.run.append_history(record.row())
        ranks.barrier()
        reporter.epoch_finished(record)
        if record.epoch + 1 < config.epochs:
            reporter.epoch_started(record.epoch + 1, config.epochs, loop.steps_per_epoch())

    if search.start_epoch < config.epochs:  # a finished run resumed to re-derive trains no further epoch
        reporter.epoch_started(search.start_epoch, config.epochs, loop.steps_per_epoch())
    loop.run(search.start_epoch, finish_epoch)


def _checkpoint(search: _PreparedSearch, epoch: int) -> dict[str, Any]:
    """supernet.pt's content after `epoch`: every state a resume restores, the configuration and the history."""
    strategy = search.strategy
    return {"epoch": epoch, "supernet": strategy.supernet.state_dict(), "strategy": strategy.state_dict(),
            "optimizer": search.optimizer.state_dict(), "rng": rng_state(), "config": to_dict(search.config),
            "history": search.history}


def _finish(search: _PreparedSearch) -> SearchResult:
    """Derive (and select when asked) the architecture, check it meets the budget, confirm it on the device when
    asked, then write arch.json, search.json and the plots; a confirmation that kept no network raises last."""
    config = search.config
    budget_ms = config.budget_ms
    derivation = search.strategy.derive()
    candidates = candidates_to_select(config.strategy, config.select_candidates)
    if candidates > 0:
        derivation = _select(search, derivation, candidates)
    if not within_budget(derivation.predicted_ms, budget_ms):
        raise HwnasError(f"derived architecture predicts {derivation.predicted_ms:.4g} ms, over the budget "
                         f"{budget_ms:.4g} ms; this is a bug in strategy '{config.strategy}'")
    confirmation = None
    if config.confirm and search.ranks.is_main:
        confirmed, confirmation = _confirm(search, derivation)
        derivation = confirmed or derivation  # none within the budget: the files record the predicted one
    weights = search.strategy.arch_weights()
    record = _run_record(search, derivation, confirmation.to_dict() if confirmation else None, weights)
    if search.ranks.is_main:
        record.write(search.run)
        _plots(search, weights, derivation)
    search.ranks.barrier()
    if confirmation is not None and confirmation.kept is None:
        from hwnas.search.confirm import not_met_message

        raise HwnasError(not_met_message(confirmation, config.device))
    return SearchResult(search.run.path, config, derivation, search.range_ms, search.history, record.summary())


def _run_record(search: _PreparedSearch, derivation: Derivation, confirmation: dict[str, Any] | None,
                weights: list[tuple[str, np.ndarray]]) -> RunRecord:
    """What the run files say about this search (every rank computes it: comparing ranks is a collective)."""
    config, history = search.config, search.history
    return RunRecord(
        run=str(search.run.path), device=config.device, space=config.space, space_name=search.space.name,
        strategy=config.strategy, budget=config.budget, budget_ms=config.budget_ms, range_ms=search.range_ms,
        derivation=derivation, confirmation=confirmation, dataset=config.data.source,
        num_classes=search.splits["train_weights"].num_classes, lut=config.lut, seed=config.seed,
        epochs=config.epochs, world_size=search.ranks.world,
        arch_params_identical=check_arch_identical(search.strategy, search.ranks),
        val_acc=history[-1]["val_acc"] if history else None, arch_confidence=arch_confidence(weights),
        seconds=time.perf_counter() - search.started)


def _confirm(search: _PreparedSearch, derivation: Derivation):
    """Time the derived network on the device (the LUT's steady method) and repair the budget from measurements;
    (None, None) with a note where the device cannot be reached."""
    from hwnas.device import get_device
    from hwnas.errors import RuntimeUnavailable
    from hwnas.lut.network_timing import measure_on_device
    from hwnas.lut.steady import reference_spec
    from hwnas.search.confirm import confirm_on_device

    config, reporter = search.config, search.reporter
    device = get_device(config.device, config.devices_file)
    reference = reference_spec(search.space.specs())

    def measure(arch):
        return measure_on_device(device, search.lut_path, [("derived", arch)], reference=reference,
                                 force=config.force)[0]

    def report(done) -> None:
        reporter.note(f"measured {done.measured.median_ms:.4g} ms (CI upper {done.measured.upper_ms:.4g}) on "
                      f"'{device.name}' for the network predicted {done.predicted_ms:.4g} ms (derived under "
                      f"{done.derived_under_ms:.4g} ms)")

    try:
        return confirm_on_device(search.strategy, derivation, config.budget_ms, measure, search.range_ms,
                                 config.confirm_rounds, on_round=report)
    except RuntimeUnavailable as error:
        reporter.note(f"not confirmed on the device ({error}); the budget holds for the prediction only")
        return None, None


def _select(search: _PreparedSearch, derivation: Derivation, candidates: int) -> Derivation:
    """The best of the derived network and `candidates` band draws, scored inside the supernet."""
    from hwnas.search.selection import select_derivation

    config, strategy = search.config, search.strategy
    if not hasattr(strategy, "choice_log_probs") or "choices" not in derivation.detail:
        search.reporter.note(f"select_candidates: strategy '{config.strategy}' has no per-position distribution "
                             "to draw from; kept its derivation")
        return derivation
    return select_derivation(strategy, derivation, candidates, search.splits, config.data.batch_size,
                             config.seed, search.device, search.reporter.note)


UNDECIDED_CONFIDENCE = 0.1  # below this mean confidence the CLI warns that argmax rests on small differences


def arch_confidence(rows: list[tuple[str, np.ndarray]]) -> float | None:
    """Mean over layers of how far each layer's top architecture weight stands above uniform, (max − 1/K)/(1 − 1/K)
    of its weights as shares: 0 for uniform weights, 1 for one-hot. None when no layer has two or more options."""
    scores = []
    for _, weights in rows:
        shares = np.clip(np.asarray(weights, dtype=float).ravel(), 0.0, None)
        if len(shares) < 2 or shares.sum() <= 0:
            continue
        uniform = 1.0 / len(shares)
        scores.append((shares.max() / shares.sum() - uniform) / (1.0 - uniform))
    return float(np.mean(scores)) if scores else None


def _plots(search: _PreparedSearch, weights: list[tuple[str, np.ndarray]], derivation: Derivation) -> None:
    """arch_weights.png, latency.png (with some history) and the strategy's own plots, when it has any."""
    from hwnas.search.plots import plot_arch_weights, plot_latency

    run, strategy, config = search.run, search.strategy, search.config
    plot_arch_weights(weights, run.file("arch_weights.png"),
                      f"{config.strategy} on {config.space}: architecture weights per layer")
    if search.history:
        plot_latency(search.history, config.budget_ms, run.file("latency.png"), derivation.predicted_ms)
    if hasattr(strategy, "write_plots"):  # a strategy's own diagnostics (cell strategies: cells.csv, cells.png)
        strategy.write_plots(run.path)
