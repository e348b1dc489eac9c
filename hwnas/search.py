"""`run_search`: one search from config to run directory (profile what the LUT lacks, check the budget, train the
supernet with the strategy, checkpoint every epoch, derive an architecture within budget, plot)."""

from __future__ import annotations

import random
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from hwnas.config import SearchConfig, check_search_config, override, to_dict
from hwnas.errors import ConfigError, HwnasError
from hwnas.ops import zero_init_residual_branches
from hwnas.run import ARCH, SPLITS, SUMMARY, RunDir
from hwnas.strategies.base import Derivation, SearchProblem, check_strategy, make_strategy
from hwnas.train import (
    EpochRecord,
    Ranks,
    SearchLoop,
    broadcast_state,
    check_arch_identical,
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
    """The device's latency model for `space`: its table (refused when it serves another device), the blocks it lacks
    measured first, and the calibration of this space and resolution fitted first when there is none (local
    devices, when allowed)."""
    from hwnas.device import get_device
    from hwnas.lut.build import build_lut
    from hwnas.lut.calibrate import calibrate_device
    from hwnas.lut.device_table import device_lut_path, open_device_model

    device = get_device(config.device, config.devices_file)
    path = device_lut_path(device, config.lut)
    specs = space.specs()
    model = open_device_model(device, path, space=space.name, force=config.force) if path.exists() else None
    missing = len(model.table.missing(s.key for s in specs)) if model else len(specs)
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
            build_lut(device, specs, path, force=config.force,
                      on_block=lambda spec, measured: reporter.profiled(spec.key, measured))
        ranks.barrier()
        model = open_device_model(device, path, space=space.name, force=config.force)
    if space.resolution not in model.calibrations:
        if device.is_local and config.calibrate_networks and config.profile_missing:
            if ranks.is_main:
                reporter.note(f"{path}: fitting the calibration of space {space.name} at {space.resolution}px on "
                              f"{config.calibrate_networks} networks measured on '{device.name}' first")
                calibrate_device(device, space, path, networks=config.calibrate_networks, force=config.force)
            ranks.barrier()
            model = open_device_model(device, path, space=space.name, force=config.force)
        elif ranks.is_main:
            reporter.note(f"{path}: no calibration of space {space.name} at {space.resolution}px, so latencies are "
                          "plain sums of blocks timed alone (often tens of percent off a whole network); "
                          f"`hwnas lut calibrate {lut_args}` fits the correction")
    return model, path


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values, so a checkpoint loads with `weights_only=True`."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached]}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    random.setstate(state["python"])


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
    from hwnas.space_files import resolve_space

    run = RunDir(out)
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
    resolution = config.data.resolution
    space = resolve_space(config.space, resolution) if space is None else space.with_resolution(resolution)
    check_strategy(config.strategy, config.strategy_params, space)
    interrupted = SearchInterrupted(run.path, None if state is None else int(state["epoch"]), config.epochs)
    try:
        return _search(config, run, state, space, reporter or SilentReporter(), interrupted)
    except KeyboardInterrupt:
        raise interrupted from None


def _search(config: SearchConfig, run: RunDir, state: dict[str, Any] | None, space: Any, reporter: Reporter,
            interrupted: SearchInterrupted) -> SearchResult:
    """The checked search: data, LUT, budget, run folder, training with a checkpoint per epoch, derivation, plots.
    `state` is the checkpoint to resume from; `interrupted.epoch` follows the last epoch saved."""
    from hwnas.data import load_splits
    from hwnas.latency import space_range_ms
    from hwnas.units import resolve_budget_ms

    resume = state is not None
    ranks = init_ranks()
    if config.threads:
        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    data = config.data
    splits = load_splits(data.source, data.resolution, ("train_weights", "train_arch", "val"),
                         **data.load_options())
    num_classes = splits["train_weights"].num_classes
    space = space.with_classes(num_classes)
    model, lut_path = open_latency_model(config, space, ranks, reporter)
    range_ms = space_range_ms(space, model)
    budget_ms = config.budget_ms if (resume and config.budget_ms) else resolve_budget_ms(config.budget, range_ms)
    config = replace(config, budget_ms=budget_ms, lut=str(lut_path))

    _seed_everything(config.seed)
    problem = SearchProblem(space, model, budget_ms, config.seed, config.budget_floor)
    strategy = make_strategy(config.strategy, problem, config.strategy_params)
    if ranks.is_main:  # after the strategy accepted the space: a refusal leaves no run folder behind
        from hwnas.data import split_record

        run.create(config, resume)
        run.write_json(SPLITS, split_record(data.source, data.resolution, **data.split_options()))
    ranks.barrier()
    if config.zero_init_residual:
        zero_init_residual_branches(strategy.supernet)
    device = resolve_device(config.torch_device, ranks)
    strategy.supernet.to(device)
    optimizer = make_weight_optimizer(strategy.weight_parameters(), config.weight_lr, config.weight_momentum,
                                      config.weight_decay)
    start_epoch, rows = 0, []
    if state is not None:
        strategy.supernet.load_state_dict(state["supernet"])
        strategy.load_state_dict(state["strategy"])
        optimizer.load_state_dict(state["optimizer"])
        _set_rng_state(state["rng"])
        start_epoch = int(state["epoch"]) + 1
        rows = list(state.get("history", []))
        if ranks.is_main:
            run.write_history(rows)
            reporter.note(f"resuming {run.path} after epoch {start_epoch} of {config.epochs}")
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
            interrupted.epoch = record.epoch  # what a Ctrl-C from now on reports
            run.append_history(record.row())
        ranks.barrier()
        reporter.epoch_finished(record)
        if record.epoch + 1 < config.epochs:
            reporter.epoch_started(record.epoch + 1, config.epochs, loop.steps_per_epoch())

    if start_epoch < config.epochs:  # a finished run resumed to re-derive trains no further epoch
        reporter.epoch_started(start_epoch, config.epochs, loop.steps_per_epoch())
    loop.run(start_epoch, finish_epoch)

    derivation = strategy.derive()
    if config.select_candidates > 0:
        derivation = _select(strategy, derivation, config, splits, device, reporter)
    if derivation.predicted_ms > budget_ms * (1 + 1e-9):
        raise HwnasError(f"derived architecture predicts {derivation.predicted_ms:.4g} ms, over the budget "
                         f"{budget_ms:.4g} ms; this is a bug in strategy '{config.strategy}'")
    confirmation = None
    if config.confirm and ranks.is_main:
        confirmed, confirmation = _confirm(strategy, derivation, budget_ms, range_ms, config, space, lut_path,
                                           reporter)
        derivation = confirmed or derivation  # none within the budget: the files record the predicted one
    history = rows
    weights = strategy.arch_weights()
    measured = confirmation.to_dict() if confirmation else None
    summary = {"run": str(run.path), "device": config.device, "space": config.space, "strategy": config.strategy,
               "budget": config.budget, "budget_ms": budget_ms, "range_ms": list(range_ms),
               "predicted_ms": derivation.predicted_ms, "argmax_ms": derivation.argmax_ms,
               "repaired": derivation.repaired, "repair_method": derivation.method,
               "measured_ms": measured and measured["measured_ms"],
               "measured_ci_upper_ms": measured and measured["measured_ci_upper_ms"], "confirmation": measured,
               "arch": derivation.arch.to_string(), "epochs": config.epochs, "world_size": ranks.world,
               "arch_params_identical_across_ranks": check_arch_identical(strategy, ranks), "lut": str(lut_path),
               "val_acc": history[-1]["val_acc"] if history else None,
               "arch_confidence": arch_confidence(weights),
               "selection": derivation.detail.get("selection"),
               "seconds": time.perf_counter() - started}
    if ranks.is_main:
        derivation.arch.save(run.file(ARCH), device=config.device, space=config.space, space_name=space.name,
                             strategy=config.strategy,
                             budget_ms=budget_ms, predicted_ms=derivation.predicted_ms,
                             argmax_ms=derivation.argmax_ms, repaired=derivation.repaired,
                             repair_method=derivation.method, dataset=data.source, num_classes=num_classes,
                             lut=str(lut_path), seed=config.seed, measured_ms=summary["measured_ms"],
                             measured_ci_upper_ms=summary["measured_ci_upper_ms"], confirmation=measured)
        run.write_json(SUMMARY, summary)
        _plots(run, strategy, weights, history, budget_ms, derivation, config)
    ranks.barrier()
    if confirmation is not None and confirmation.kept is None:
        from hwnas.confirm import not_met_message

        raise HwnasError(not_met_message(confirmation, config.device))
    return SearchResult(run.path, config, derivation, range_ms, history, summary)


def _confirm(strategy: Any, derivation: Derivation, budget_ms: float, range_ms: tuple[float, float],
             config: SearchConfig, space: Any, lut_path: Path, reporter: Reporter):
    """Time the derived network on the device (the LUT's steady method) and repair the budget from measurements;
    (None, None) with a note where the device cannot be reached."""
    from hwnas.confirm import confirm_on_device
    from hwnas.device import get_device
    from hwnas.errors import RuntimeUnavailable
    from hwnas.lut.network_timing import measure_on_device
    from hwnas.lut.steady import reference_spec

    device = get_device(config.device, config.devices_file)
    reference = reference_spec(space.specs())

    def measure(arch):
        return measure_on_device(device, lut_path, [("derived", arch)], reference=reference, force=config.force)[0]

    def report(done) -> None:
        reporter.note(f"measured {done.measured.median_ms:.4g} ms (CI upper {done.measured.upper_ms:.4g}) on "
                      f"'{device.name}' for the network predicted {done.predicted_ms:.4g} ms (derived under "
                      f"{done.derived_under_ms:.4g} ms)")

    try:
        return confirm_on_device(strategy, derivation, budget_ms, measure, range_ms, config.confirm_rounds,
                                 on_round=report)
    except RuntimeUnavailable as error:
        reporter.note(f"not confirmed on the device ({error}); the budget holds for the prediction only")
        return None, None


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
