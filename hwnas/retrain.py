"""Train a search's derived network from scratch (`hwnas train runs/NAME`) and measure it on the run's device."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from hwnas.arch import Arch
from hwnas.config import SearchConfig
from hwnas.errors import HwnasError
from hwnas.search.run_folder import ARCH, TRAIN_REPORT, TRAINED, RunDir
from hwnas.training import TrainRecord, accuracy, train_with


def measure_trained(arch: Arch, config: SearchConfig) -> dict[str, Any]:
    """The network timed on the run's device with its table's steady method, beside the reference block of the
    run's space (as the search confirmed it)."""
    from hwnas.device import get_device
    from hwnas.lut.device_table import device_lut_path
    from hwnas.lut.network_timing import measure_on_device
    from hwnas.lut.steady import reference_spec
    from hwnas.spaces.files import resolve_space

    device = get_device(config.device, config.devices_file)
    try:
        reference = reference_spec(resolve_space(config.space, arch.resolution, arch.num_classes).specs())
    except HwnasError:  # a space a library caller searched as an object, not by a name: pick among the network's
        reference = None
    return measure_on_device(device, device_lut_path(device, config.lut), [("trained", arch)], reference=reference,
                             force=config.force)[0].to_dict()


def _check_table(config: SearchConfig) -> None:
    """Refuse, before training, a run whose table serves another device than the one it will be measured on."""
    from hwnas.device import get_device
    from hwnas.lut.device_table import device_lut_path, open_device_table

    device = get_device(config.device, config.devices_file)
    if device_lut_path(device, config.lut).exists():
        open_device_table(device, config.lut, force=config.force)


def train_run(run: str | Path, *, epochs: int | None = None, lr: float | None = None,
              batch_size: int | None = None, measure: bool = True,
              on_epoch: Callable[[TrainRecord], None] | None = None,
              on_step: Callable[[int, int, int], None] | None = None) -> dict[str, Any]:
    """Train `run`'s arch.json on the run's data from scratch; write trained.pt (state_dict of `Arch.build()`)
    and train.json (accuracy, measured and predicted latency)."""
    from hwnas.data import load_splits

    folder = RunDir(run)
    config = folder.config()
    if not folder.file(ARCH).exists():
        raise HwnasError(f"{folder.path}: no {ARCH}; the search has not finished (resume it with --resume)")
    arch = Arch.load(folder.file(ARCH))  # first: a broken arch.json is one line naming it
    if measure:
        _check_table(config)
    saved = json.loads(folder.file(ARCH).read_text())
    data = config.data
    splits = load_splits(data.source, data.resolution, ("train", "test"), **data.load_options())
    if arch.num_classes != splits["train"].num_classes:
        raise HwnasError(f"{folder.file(ARCH)}: {arch.num_classes} classes, the data has "
                         f"{splits['train'].num_classes}")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    model = arch.build()
    overrides = {"epochs": epochs, "lr": lr, "batch_size": batch_size}
    settings = replace(config.train, **{key: value for key, value in overrides.items() if value is not None})
    start = time.perf_counter()
    from hwnas.distributed import resolve_device

    records = train_with(model, splits["train"], settings, seed=config.seed, on_epoch=on_epoch, on_step=on_step,
                         device=resolve_device(config.torch_device))
    test_acc = accuracy(model, splits["test"])
    model.cpu()
    torch.save(model.state_dict(), folder.file(TRAINED))
    report: dict[str, Any] = {
        "run": str(folder.path), "arch": arch.to_string(), "device": config.device, "epochs": settings.epochs,
        "batch_size": settings.batch_size, "lr": settings.lr,
        "zero_init_residual": settings.zero_init_residual, "test_acc": test_acc,
        "train_acc": records[-1].train_acc if records else None,
        "train_seconds": time.perf_counter() - start, "budget_ms": saved.get("budget_ms"),
        "predicted_ms": saved.get("predicted_ms"), "measured_ms": None, "trained": str(folder.file(TRAINED)),
        "test_images": len(splits["test"]),
    }
    if measure:
        try:
            timing = measure_trained(arch, config)
            report.update(measured_ms=timing["median_ms"], measured_ci_upper_ms=timing["ci_upper_ms"],
                          measured_reference_ratio=timing["reference_ratio"])  # the machine's speed vs the LUT's
        except HwnasError as error:  # the runtime or the device is not reachable from here: say so, keep results
            report["measure_error"] = str(error)
    folder.write_json(TRAIN_REPORT, report)
    return report
