"""`run_search`: one search from config to run directory (profile what the LUT lacks, check the budget, train the
supernet with the strategy, checkpoint every epoch, derive an architecture within budget, plot)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hwnas.config import SearchConfig, to_dict
from hwnas.errors import HwnasError
from hwnas.ops import zero_init_residual_branches
from hwnas.run import ARCH, SUMMARY, RunDir
from hwnas.strategies.base import Derivation, SearchProblem, make_strategy
from hwnas.train import (
    EpochRecord,
    Ranks,
    SearchLoop,
    broadcast_state,
    init_ranks,
    make_weight_optimizer,
    resolve_device,
)


class Reporter(Protocol):
    """Progress callbacks (the CLI draws a live display; benchmarks and tests stay silent)."""

    def profiling(self, total: int) -> None: ...
    def profiled(self, key: str, measured: bool) -> None: ...
    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None: ...
    def epoch_finished(self, record: EpochRecord) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def profiling(self, total: int) -> None: ...
    def profiled(self, key: str, measured: bool) -> None: ...
    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None: ...
    def step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None: ...
    def epoch_finished(self, record: EpochRecord) -> None: ...
    def note(self, text: str) -> None: ...


@dataclass
class SearchResult:
    run_dir: Path
    config: SearchConfig
    derivation: Derivation
    range_ms: tuple[float, float]
    history: list[dict[str, Any]]
    summary: dict[str, Any]


def open_latency_model(config: SearchConfig, space: Any, ranks: Ranks, reporter: Reporter):
    """The device's LUT for `space`, measuring the blocks it lacks first (local devices, when allowed)."""
    from hwnas.device import get_device
    from hwnas.lut.build import build_lut
    from hwnas.lut.model import LatencyModel
    from hwnas.lut.table import LatencyTable, default_lut_path

    device = get_device(config.device, config.devices_file)
    path = Path(config.lut) if config.lut else default_lut_path(device.name)
    specs = space.specs()
    table = LatencyTable.load(path) if path.exists() else None
    missing = len(table.missing(s.key for s in specs)) if table is not None else len(specs)
    lut_args = (f"--device {device.name} --space {config.space} --resolution {space.resolution} --classes "
                f"{space.num_classes}" + (f" --lut {path}" if config.lut else ""))  # what a fix command is run on
    if missing:
        from hwnas.space_files import is_space_file

        if not (device.is_local and config.profile_missing):
            why = "" if device.is_local else f" (device '{device.name}' is remote)"
            fix = ("rerun without --no-profile-missing to measure them here" if is_space_file(config.space) else
                   f"run `hwnas profile {lut_args}` first")
            raise HwnasError(f"{path}: {missing} of the {len(specs)} blocks space '{config.space}' needs at "
                             f"{space.resolution}px are not measured{why}; {fix}")
        if ranks.is_main:
            reporter.note(f"{path}: measuring {missing} missing block(s) on '{device.name}' first")
            reporter.profiling(len(specs))
            build_lut(device, specs, path, on_block=lambda spec, measured: reporter.profiled(spec.key, measured))
        ranks.barrier()
        table = LatencyTable.load(path)
    model = LatencyModel(table)
    if ranks.is_main and space.resolution not in model.calibrations:
        reporter.note(f"{path}: not calibrated at {space.resolution}px, so latencies are plain sums of blocks timed "
                      f"alone (often tens of percent off a whole network); `hwnas lut calibrate {lut_args}` fits the "
                      "correction")
    return model, path


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def run_search(config: SearchConfig | None, out: str | Path, *, resume: bool = False, epochs: int | None = None,
               select_candidates: int | None = None, reporter: Reporter | None = None,
               space: Any = None) -> SearchResult:
    """Search per `config` into run directory `out`; with `resume`, continue the run saved there (`epochs` may
    extend it, and `select_candidates` re-derives a finished one with a supernet selection of that size).

    `space` (library use) searches that space object instead of resolving `config.space` by name; pass the same
    object again to resume."""
    from hwnas.data import load_splits
    from hwnas.latency import space_range_ms
    from hwnas.space_files import resolve_space
    from hwnas.units import resolve_budget_ms

    reporter = reporter or SilentReporter()
    ranks = init_ranks()
    run = RunDir(out)
    if resume:
        config = run.config()
        if not run.has_checkpoint:
            raise HwnasError(f"{run.path}: nothing to resume (no supernet.pt); run without --resume")
    elif config is None:
        raise HwnasError("run_search needs a config unless resuming")
    if epochs is not None:
        config = replace(config, epochs=epochs)
    if select_candidates is not None:
        config = replace(config, select_candidates=select_candidates)
    if config.epochs < 1 or not 0 <= config.warmup_epochs < config.epochs + 1:
        raise HwnasError(f"epochs {config.epochs} and warmup_epochs {config.warmup_epochs}: need epochs >= 1 and "
                         "0 <= warmup_epochs <= epochs")
    if config.select_candidates < 0:
        raise HwnasError(f"select_candidates {config.select_candidates}: expected 0 (keep the derived network) or "
                         "more draws to score in the supernet")
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    data = config.data
    splits = load_splits(data.source, data.resolution, ("train_weights", "train_arch", "val"),
                         **data.split_options())
    num_classes = splits["train_weights"].num_classes
    if space is None:
        space = resolve_space(config.space, data.resolution, num_classes)
    else:
        space = space.with_resolution(data.resolution).with_classes(num_classes)
    model, lut_path = open_latency_model(config, space, ranks, reporter)
    range_ms = space_range_ms(space, model)
    budget_ms = config.budget_ms if (resume and config.budget_ms) else resolve_budget_ms(config.budget, range_ms)
    config = replace(config, budget_ms=budget_ms, lut=str(lut_path))
    if ranks.is_main:
        run.create(config, resume)
    ranks.barrier()

    _seed_everything(config.seed)
    if not 0 <= config.budget_floor < 1:
        raise HwnasError(f"budget_floor {config.budget_floor}: expected a share in [0, 1)")
    problem = SearchProblem(space, model, budget_ms, config.seed, config.budget_floor)
    strategy = make_strategy(config.strategy, problem, config.strategy_params)
    if config.zero_init_residual:
        zero_init_residual_branches(strategy.supernet)
    device = resolve_device(config.torch_device, ranks)
    strategy.supernet.to(device)
    optimizer = make_weight_optimizer(strategy.weight_parameters(), config.weight_lr, config.weight_momentum,
                                      config.weight_decay)
    start_epoch, rows = 0, []
    if resume:
        state = run.load_checkpoint()
        strategy.supernet.load_state_dict(state["supernet"])
        strategy.load_state_dict(state["strategy"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        rows = list(state.get("history", []))
        if ranks.is_main:
            run.write_history(rows)
            reporter.note(f"resuming {run.path} after epoch {start_epoch - 1}")
    broadcast_state(strategy.supernet, ranks)

    loop = SearchLoop(strategy, splits["train_weights"], splits["train_arch"], splits["val"], optimizer,
                      config.epochs, config.warmup_epochs, data.batch_size, config.weight_lr, config.seed,
                      budget_ms, config.grad_clip, ranks, device,
                      on_step=lambda e, s, n, m: reporter.step(e, s, n, m))

    def finish_epoch(record: EpochRecord) -> None:
        rows.append(record.row())
        if ranks.is_main:  # checkpoint first (it carries the history), then the row: a kill loses neither
            run.save_checkpoint({"epoch": record.epoch, "supernet": strategy.supernet.state_dict(),
                                 "strategy": strategy.state_dict(), "optimizer": optimizer.state_dict(),
                                 "rng": _rng_state(), "config": to_dict(config), "history": rows})
            run.append_history(record.row())
        ranks.barrier()
        reporter.epoch_finished(record)
        if record.epoch + 1 < config.epochs:
            reporter.epoch_started(record.epoch + 1, config.epochs, loop.steps_per_epoch())

    reporter.epoch_started(start_epoch, config.epochs, loop.steps_per_epoch())
    loop.run(start_epoch, finish_epoch)

    derivation = strategy.derive()
    if config.select_candidates > 0:
        derivation = _select(strategy, derivation, config, splits, device, reporter)
    if derivation.predicted_ms > budget_ms * (1 + 1e-9):
        raise HwnasError(f"derived architecture predicts {derivation.predicted_ms:.4g} ms, over the budget "
                         f"{budget_ms:.4g} ms; this is a bug in strategy '{config.strategy}'")
    history = rows
    weights = strategy.arch_weights()
    summary = {"run": str(run.path), "device": config.device, "space": config.space, "strategy": config.strategy,
               "budget": config.budget, "budget_ms": budget_ms, "range_ms": list(range_ms),
               "predicted_ms": derivation.predicted_ms, "argmax_ms": derivation.argmax_ms,
               "repaired": derivation.repaired, "repair_method": derivation.method,
               "arch": derivation.arch.to_string(), "epochs": config.epochs, "world_size": ranks.world,
               "arch_params_identical_across_ranks": True, "lut": str(lut_path),
               "val_acc": history[-1]["val_acc"] if history else None,
               "arch_confidence": arch_confidence(weights),
               "selection": derivation.detail.get("selection"),
               "seconds": time.perf_counter() - started}
    if ranks.is_main:
        derivation.arch.save(run.file(ARCH), device=config.device, space=config.space, strategy=config.strategy,
                             budget_ms=budget_ms, predicted_ms=derivation.predicted_ms,
                             argmax_ms=derivation.argmax_ms, repaired=derivation.repaired,
                             repair_method=derivation.method, dataset=data.source, num_classes=num_classes,
                             lut=str(lut_path), seed=config.seed)
        run.write_json(SUMMARY, summary)
        _plots(run, strategy, weights, history, budget_ms, derivation, config)
    ranks.barrier()
    return SearchResult(run.path, config, derivation, range_ms, history, summary)


def _select(strategy: Any, derivation: Derivation, config: SearchConfig, splits: dict[str, Any],
            device: torch.device, reporter: Reporter) -> Derivation:
    """The best of the derived network and config.select_candidates band draws, scored inside the supernet."""
    from hwnas.selection import select_derivation

    if not hasattr(strategy, "choice_log_probs") or "choices" not in derivation.detail:
        reporter.note(f"select_candidates: strategy '{config.strategy}' has no per-position distribution to draw "
                      "from; kept its derivation")
        return derivation
    return select_derivation(strategy, derivation, config.select_candidates, splits, config.data.batch_size,
                             config.seed, device, reporter.note)


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


def _plots(run: RunDir, strategy: Any, weights: list[tuple[str, np.ndarray]], history: list[dict[str, Any]],
           budget_ms: float, derivation: Derivation, config: SearchConfig) -> None:
    from hwnas.search_plots import plot_arch_weights, plot_latency

    plot_arch_weights(weights, run.file("arch_weights.png"),
                      f"{config.strategy} on {config.space}: architecture weights per layer")
    if history:
        plot_latency(history, budget_ms, run.file("latency.png"), derivation.predicted_ms)
    if hasattr(strategy, "write_plots"):  # a strategy's own diagnostics (cell strategies: cells.csv, cells.png)
        strategy.write_plots(run.path)
