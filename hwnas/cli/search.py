"""`hwnas search`: find the most accurate architecture of a space that meets a latency budget on a device."""

from __future__ import annotations

from pathlib import Path

import typer

from hwnas.cli.common import DevicesFile, JsonFlag, console, handles_errors, print_json, progress_bar
from hwnas.config import DataConfig, SearchConfig
from hwnas.strategies import DEFAULT_CANDIDATES, STRATEGIES
from hwnas.units import MAX_RESOLUTION


def register(app: typer.Typer) -> None:
    app.command("search")(search)


DEFAULT, DEFAULT_DATA = SearchConfig(), DataConfig()  # the defaults the help shows (flags left out keep them)


def _default_candidates() -> str:
    return ", ".join([*(f"{name} {count}" for name, count in DEFAULT_CANDIDATES.items()), "the others 0"])


@handles_errors
def search(
    out: Path = typer.Option(..., "--out", "-o", help="Run directory to write (runs/NAME).", file_okay=False),
    device: str = typer.Option(None, "--device", "-d", help="Device name from devices.yaml "
                               f"(default: {DEFAULT.device})."),
    space: str = typer.Option(None, "--space", "-s", help="Search space name or a space YAML file "
                              f"(default: {DEFAULT.space})."),
    strategy: str = typer.Option(None, "--strategy", help=f"Search strategy: {' | '.join(STRATEGIES)} "
                                 f"(default: {DEFAULT.strategy})."),
    latency_budget: str = typer.Option(None, "--latency-budget", "-b",
                                       help="Budget: 20ms, 0.02s, 20000us, or a share of the space's feasible "
                                            "range on the device, e.g. 50%."),
    data: str = typer.Option(None, "--data", help="digits or digits-hard (embedded), cifar10:PATH, "
                             "cifar100:PATH, a folder of MNIST-format idx files or an image folder "
                             f"(default: {DEFAULT_DATA.source})."),
    epochs: int = typer.Option(None, "--epochs", "-e", min=1, help=f"Search epochs (default: {DEFAULT.epochs})."),
    warmup_epochs: int = typer.Option(None, "--warmup-epochs", min=0, help="Weights-only epochs first "
                                      f"(default: {DEFAULT.warmup_epochs})."),
    seed: int = typer.Option(None, "--seed", help="Seed of weights, sampling and data order "
                             f"(default: {DEFAULT.seed})."),
    resolution: int = typer.Option(None, "--resolution", "-r", min=1, max=MAX_RESOLUTION,
                                   help=f"Input resolution in pixels (default: {DEFAULT_DATA.resolution})."),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Images per step and process "
                                   f"(default: {DEFAULT_DATA.batch_size})."),
    limit: int = typer.Option(None, "--limit", min=0, help="Keep at most N images per data split (quick checks; "
                              f"0: all; default: {DEFAULT_DATA.limit})."),
    train_limit: int = typer.Option(None, "--train-limit", min=0, help="Keep at most N training images, every test "
                                    "and validation image (a large dataset at affordable cost; 0: all; "
                                    f"default: {DEFAULT_DATA.train_limit})."),
    loader: str = typer.Option(None, "--loader", help="How images are read: memory (decoded once into memory), "
                               "stream (decoded batch by batch by worker processes), auto (memory up to 1 GiB of "
                               f"decoded images; default: {DEFAULT_DATA.loader})."),
    workers: int = typer.Option(None, "--workers", min=0, help="Worker processes decoding a streamed split "
                                f"(default: {DEFAULT_DATA.workers})."),
    cache: Path = typer.Option(None, "--cache", file_okay=False, help="Folder for decoded images at the search "
                               "resolution (built once, rebuilt when the source changes; default: none)."),
    weight_lr: float = typer.Option(None, "--weight-lr", min=0.0, help="SGD learning rate of the supernet "
                                    f"(default: {DEFAULT.weight_lr})."),
    torch_device: str = typer.Option(None, "--torch-device", help="Where the supernet trains: auto, cpu, cuda, "
                                     f"cuda:N (default: {DEFAULT.torch_device})."),
    threads: int = typer.Option(None, "--threads", min=0, help="torch CPU threads per process (0: torch's default; "
                                f"default: {DEFAULT.threads})."),
    param: list[str] = typer.Option([], "--param", "-p", help="Strategy hyperparameter KEY=VALUE (repeatable), "
                                    "e.g. -p hard=true."),
    select: str = typer.Option(None, "--select", help="Cell strategies: derive by 'magnitude' (largest weight) "
                               "or 'ostr' (operation strength); the same as -p select=..."),
    candidates: int = typer.Option(None, "--candidates", min=0, help="Chain strategies: after the search, score the "
                                   "derived network and N draws from the final architecture distribution within "
                                   "the budget band inside the supernet (architecture and validation splits) and "
                                   "keep the best; 0: keep the derived one; with --resume, re-derives a finished "
                                   f"search (default: the strategy's, {_default_candidates()})."),
    config_file: Path = typer.Option(None, "--config", help="Start from this config YAML (a run's config.yaml).",
                                     dir_okay=False),
    lut: Path = typer.Option(None, "--lut", help="LUT CSV (default: luts/DEVICE.csv).", dir_okay=False),
    devices_file: Path = DevicesFile,
    profile_missing: bool = typer.Option(None, "--profile-missing/--no-profile-missing",
                                         help="Measure the blocks the LUT lacks first (local devices), or refuse "
                                              "(default: measure)."),
    confirm: bool = typer.Option(None, "--confirm/--no-confirm",
                                 help="Time the derived network on the device and re-derive where it misses the "
                                      "budget (default: confirm where the device can be reached)."),
    confirm_rounds: int = typer.Option(None, "--confirm-rounds", min=0, max=20,
                                       help=f"Re-derivations at most (default: {DEFAULT.confirm_rounds})."),
    calibrate_networks: int = typer.Option(None, "--calibrate-networks", min=0, max=1000,
                                           help="With no calibration of this space and resolution, fit one first on "
                                                "N networks measured on the device (0: plain sums; default: "
                                                f"{DEFAULT.calibrate_networks})."),
    force: bool = typer.Option(None, "--force", help="Use a table measured on another device or setup."),
    resume: bool = typer.Option(False, "--resume", help="Continue the search saved in --out (its config.yaml; "
                                "--epochs may extend it)."),
    as_json: bool = JsonFlag,
) -> None:
    """Search SPACE for the most accurate architecture that meets the latency budget on DEVICE: predicted from the
    LUT during the search, then measured on the device at the end."""
    from hwnas.config import load_config, override, parse_assignments
    from hwnas.errors import ConfigError
    from hwnas.search.runner import SearchInterrupted, run_search

    config = None
    if not resume:
        config = load_config(config_file) if config_file else SearchConfig()
        if latency_budget is None and config_file is None:
            raise ConfigError("--latency-budget is required (e.g. 20ms, or 50% of the space's feasible range)")
        params = {**config.strategy_params, **parse_assignments(param), **({"select": select} if select else {})}
        data_config = override(config.data or DataConfig(), source=data, resolution=resolution, batch_size=batch_size,
                               limit=limit, train_limit=train_limit, loader=loader, workers=workers,
                               cache=str(cache) if cache else None)
        config = override(config, device=device, space=space, strategy=strategy, budget=latency_budget, seed=seed,
                          epochs=epochs, warmup_epochs=warmup_epochs, weight_lr=weight_lr, threads=threads,
                          torch_device=torch_device, select_candidates=candidates,
                          lut=str(lut) if lut else None, devices_file=str(devices_file) if devices_file else None,
                          profile_missing=profile_missing, strategy_params=params, data=data_config,
                          confirm=confirm, confirm_rounds=confirm_rounds, calibrate_networks=calibrate_networks,
                          force=force)
    elif any(v is not None for v in (device, space, strategy, latency_budget, data, seed, resolution, limit,
                                     train_limit, select)) or param:
        raise ConfigError("--resume continues the run as saved in OUT/config.yaml; only --epochs and --candidates "
                          "may change")
    import os

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 reports
    try:
        with progress_bar(quiet=as_json or not main_rank) as progress:
            display = SearchDisplay(progress, console, quiet=as_json or not main_rank)
            result = run_search(config, out, resume=resume, epochs=epochs if resume else None,
                                select_candidates=candidates if resume else None, reporter=display)
    except SearchInterrupted as interrupted:  # Ctrl-C: say where the checkpoint stands and how to go on
        if main_rank:
            console.print(str(interrupted), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    if not main_rank:
        return
    if as_json:
        print_json(result.summary)
    else:
        _print_result(result)


def _print_result(result) -> None:
    """The derived network, its prediction and derivation, a warning where the weights barely moved, the files
    written, and the last line: measured (or only predicted) latency of the budget on the device."""
    from hwnas.search.runner import UNDECIDED_CONFIDENCE

    summary = result.summary
    console.print(f"[bold]{summary['arch']}[/bold]", highlight=False, soft_wrap=True)
    console.print(f"predicted {summary['predicted_ms']:.4g} ms on {summary['device']} (budget "
                  f"{summary['budget_ms']:.4g} ms, feasible {summary['range_ms'][0]:.4g}..{summary['range_ms'][1]:.4g}"
                  f" ms); {result.derivation.describe()}")
    confidence = summary["arch_confidence"]
    if confidence is not None and confidence < UNDECIDED_CONFIDENCE:
        console.print(f"[yellow]warning:[/yellow] the architecture weights are still close to uniform (confidence "
                      f"{confidence:.3f}, 0 = uniform, 1 = one-hot): the derived choices rest on small differences; "
                      "search for more --epochs or raise the architecture step ("
                      + ("-p max_gamma=..." if summary["strategy"] == "hardcore" else "-p arch_lr=...") + ")")
    console.print(f"wrote {result.run_dir}/ (config.yaml, history.csv, supernet.pt, arch.json, arch_weights.png, "
                  f"latency.png); next: hwnas train {result.run_dir}")
    if summary["measured_ms"] is not None:
        console.print(f"measured {summary['measured_ms']:.4g} ms of budget {summary['budget_ms']:.4g} ms on "
                      f"{summary['device']}", highlight=False)
    else:
        console.print(f"predicted {summary['predicted_ms']:.4g} ms of budget {summary['budget_ms']:.4g} ms on "
                      f"{summary['device']} (not measured)", highlight=False)


class SearchDisplay:
    """The live display: a bar for LUT profiling, a bar per epoch with the running losses, and one line per
    finished epoch (losses, accuracy, expected latency, temperature)."""

    def __init__(self, progress, console, quiet: bool = False):
        self.progress, self.console, self.quiet = progress, console, quiet
        self.task = None
        self.profile_task = None

    def note(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

    def profiling(self, total: int) -> None:
        self.profile_task = self.progress.add_task("profiling blocks", total=total)

    def profiled(self, key: str, measured: bool) -> None:
        self.progress.update(self.profile_task, advance=1, description=f"profiling {key[:40]}")

    def epoch_started(self, epoch: int, epochs: int, steps: int) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(f"epoch {epoch + 1}/{epochs}", total=steps)
        self.epoch, self.epochs = epoch, epochs

    def step(self, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        shown = " ".join(f"{k} {v:.3g}" for k, v in metrics.items() if k in ("loss", "arch_loss", "sampled_ms"))
        self.progress.update(self.task, completed=step + 1, description=f"epoch {epoch + 1}/{self.epochs} {shown}")

    def epoch_finished(self, record) -> None:
        extra = " ".join(f"{k} {v:.3g}" for k, v in record.status.items())
        self.note(f"epoch {record.epoch + 1}: loss {record.weight_loss:.3f} arch {record.arch_loss:.3f} "
                  f"train acc {record.train_acc:.3f} val acc {record.val_acc:.3f} "
                  f"E\\[lat] {record.expected_ms:.4g} ms (budget {record.budget_ms:.4g}) {extra} "
                  f"[{record.seconds:.0f} s]")
