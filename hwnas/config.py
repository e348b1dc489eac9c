"""Run configuration as frozen dataclasses: loaded once from YAML (checked key by key), overridden by CLI flags
with `dataclasses.replace`, written back to `runs/NAME/config.yaml` so a run can be repeated or resumed.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from hwnas.errors import ConfigError

SPLIT_OPTIONS = ("test_fraction", "val_fraction", "arch_fraction", "split_seed", "limit", "train_limit")


DEFAULT_LUT_DIR = Path("luts")  # where each device's table lives unless --lut or --lut-dir says otherwise


@dataclass(frozen=True)
class DataConfig:
    """Which images, at which resolution, and how they are split."""

    source: str = "digits"  # digits, digits-hard (embedded), cifar10:PATH, cifar100:PATH, an idx or image folder
    resolution: int = 32  # input side in pixels; the space is searched (and its LUT measured) at this size
    batch_size: int = 32  # images per step on each rank
    arch_fraction: float = 0.2  # share of training images held out for architecture steps (FBNet: 20%)
    val_fraction: float = 0.1  # share of images for the per-epoch validation accuracy
    test_fraction: float = 0.2  # share kept as test set when the source has none (digits, plain folders)
    split_seed: int = 0  # fixes the splits; independent of the search seed so the test set never moves
    limit: int = 0  # keep at most this many images per split (0: all); for quick checks and tests
    train_limit: int = 0  # keep at most this many training images (0: all), test and val whole: a large dataset's
    #                       full test set resolves small accuracy differences while training stays affordable
    loader: str = "auto"  # memory: decode the splits into memory; stream: decode batch by batch from disk in worker
    #                       processes; auto: memory up to hwnas.data.IN_MEMORY_BYTES (1 GiB) of decoded images
    workers: int = 2  # worker processes decoding a streamed split's images (0: in the training process)
    cache: str | None = None  # folder for the decoded images at `resolution` (a numpy memmap, built once, rebuilt
    #                           when the source's files change); None: decode from the source every epoch

    def split_options(self) -> dict[str, Any]:
        """The `hwnas.data.load_splits` keywords that decide which images land in which split."""
        return {name: getattr(self, name) for name in SPLIT_OPTIONS}

    def load_options(self) -> dict[str, Any]:
        """Every `hwnas.data.load_splits` keyword: the split options and how the images are read."""
        return {**self.split_options(), "loader": self.loader, "workers": self.workers, "cache": self.cache}


@dataclass(frozen=True)
class TrainConfig:
    """Training the derived network from scratch (`hwnas train runs/NAME`)."""

    epochs: int = 10  # epochs over the whole training split (weights + architecture images)
    batch_size: int = 128  # images per step; at 32 a network's CIFAR-10 accuracy moved by up to 0.13 between seeds
    lr: float = 0.1  # SGD learning rate, cosine-annealed to zero (at batch 32, 0.05 diverged on 22-layer networks)
    warmup_epochs: float = 1.0  # the rate rises linearly from 0 over this many epochs (at most a fifth of them)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 4e-5  # L2 penalty on the weights
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    zero_init_residual: bool = True  # residual blocks start as the identity (last batch-norm scale 0); with unit
    # scales a 21-layer ProxylessNAS network at 32 px stayed above chance loss for 3 epochs at lr 0.1


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs to be repeated: device, space, strategy, budget, data, schedule, seed."""

    device: str = "cpu"  # device name from devices.yaml (or from devices_file)
    devices_file: str | None = None  # the user's devices YAML, adding to the shipped one
    lut: str | None = None  # latency table CSV; None: luts/DEVICE.csv
    space: str = "fbnet"  # search space name (hwnas.spaces.catalog.SPACES)
    strategy: str = "fbnet"  # search strategy name (hwnas.strategies.STRATEGIES)
    budget: str = "50%"  # latency budget as given: 20ms / 0.02s / 20000us, or a share of the feasible range (50%)
    budget_ms: float | None = None  # the budget in milliseconds on the device, resolved when the run starts
    budget_floor: float = 0.9  # the derived network should use at least this share of the budget; an argmax
    # predicted below it is filled up (least probability lost per millisecond gained); 0 keeps the argmax
    epochs: int = 4  # search epochs (warm-up included)
    warmup_epochs: int = 1  # first epochs train weights only, sampling paths uniformly, before architecture steps
    seed: int = 0  # seeds weights, path sampling and data order (the same on every rank)
    weight_lr: float = 0.05  # SGD learning rate of the supernet weights, cosine-annealed over the epochs
    weight_momentum: float = 0.9  # SGD momentum of the supernet weights
    weight_decay: float = 4e-5  # L2 penalty on the supernet weights
    grad_clip: float = 5.0  # clip the weight gradient norm to this (0: no clipping)
    select_candidates: int | None = None  # after the search, score the derived network and this many draws from
    # the final architecture distribution within the budget band inside the supernet (held-out splits); keep the
    # best. None: the strategy's default (hwnas.strategies.DEFAULT_CANDIDATES: HardCoRe-NAS 20, the others 0)
    zero_init_residual: bool = True  # residual candidates start as the identity (last batch-norm scale 0): sampled
    # paths then train from the first steps; with unit scales a layer whose sampled path changes stalls training
    torch_device: str = "auto"  # where the supernet trains: auto (cuda when available), cpu, cuda, cuda:N
    threads: int = 1  # torch CPU threads per process (small 32 px convolutions gain little from more, and a
    # shared machine makes extra threads wait on each other); 0 leaves torch's default (all cores)
    profile_missing: bool = True  # measure LUT blocks the space needs and the table lacks (local devices only)
    calibrate_networks: int = 10  # with no calibration of this space at this resolution, fit one first on this many
    # random networks measured on the device (0: predict with the plain sum of blocks)
    confirm: bool = True  # time the derived network on the device and re-derive where it misses the budget
    confirm_rounds: int = 3  # re-derivations at most after the first measurement
    force: bool = False  # use a table measured on another device or setup (--force)
    strategy_params: dict[str, Any] = field(default_factory=dict)  # strategy hyperparameters (see its Params)
    data: DataConfig = field(default_factory=DataConfig)  # dataset and splits
    train: TrainConfig = field(default_factory=TrainConfig)  # from-scratch training of the derived network


def check_search_config(config: SearchConfig) -> None:
    """Refuse counts, shares and a budget a search cannot use, in one line naming the key, before anything is loaded
    or written (a config.yaml can hold them as well as the flags)."""
    from operator import attrgetter

    from hwnas.units import check_resolution, is_relative_budget, parse_duration_ms

    rules = (("epochs", config.epochs >= 1, "at least 1"),
             ("warmup_epochs", 0 <= config.warmup_epochs <= config.epochs, f"0..epochs ({config.epochs})"),
             ("select_candidates", config.select_candidates is None or config.select_candidates >= 0,
              "0 (keep the derived network) or more draws to score in the supernet"),
             ("threads", config.threads >= 0, "0 (torch's default) or more"),
             ("budget_floor", 0 <= config.budget_floor < 1, "a share in [0, 1)"),
             ("weight_lr", config.weight_lr >= 0, "0 or more"),
             ("train.warmup_epochs", config.train.warmup_epochs >= 0, "0 or more"),
             ("train.batch_size", config.train.batch_size >= 1, "at least 1"),
             ("data.batch_size", config.data.batch_size >= 1, "at least 1"),
             ("calibrate_networks", config.calibrate_networks == 0 or 3 <= config.calibrate_networks <= 1000,
              "0 (no calibration) or 3..1000 networks"),
             ("confirm_rounds", 0 <= config.confirm_rounds <= 20, "0..20"))
    for key, valid, expected in rules:
        if not valid:
            raise ConfigError(f"{key} {attrgetter(key)(config)}: expected {expected}")
    check_resolution(config.data.resolution, "data.resolution")
    if not is_relative_budget(config.budget):
        parse_duration_ms(config.budget, "--latency-budget")


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (YAML-ready)."""
    return dataclasses.asdict(config)


_FLOAT_WITHOUT_DOT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _check_type(where: str, key: str, value: Any, annotation: Any) -> Any:
    """Accept the value when it fits the annotation (ints for floats too); else one line naming the key."""
    hint = annotation
    origin = typing.get_origin(hint)
    options = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        base = typing.get_origin(option) or option
        if base is typing.Literal:
            if value in typing.get_args(option) and not isinstance(value, bool):
                return value
            continue
        if option is type(None) and value is None:
            return None
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if base is float and isinstance(value, str) and _FLOAT_WITHOUT_DOT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 3e-4 (no dot) as a string
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if base in (str, bool, dict) and isinstance(value, base):
            return value
    expected = " or ".join(_expected(o) for o in options)
    raise ConfigError(f"{where}: key '{key}' must be {expected}, got {value!r}")


def _expected(option: Any) -> str:
    if option is type(None):
        return "null"
    if typing.get_origin(option) is typing.Literal:
        return "one of " + "|".join(str(v) for v in typing.get_args(option))
    return getattr(typing.get_origin(option) or option, "__name__", str(option))


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build a config dataclass from a mapping, refusing unknown keys and wrongly typed values."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key '{unknown[0]}' (allowed: {', '.join(known)})")
    values = {}
    for key, value in data.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            values[key] = from_dict(hint, value, f"{where}: {key}")
        else:
            values[key] = _check_type(where, key, value, hint)
    return cls(**values)


def load_config(path: str | Path) -> SearchConfig:
    """A run's config.yaml, every key checked."""
    from hwnas.files import read_yaml

    data = read_yaml(path, "config file")
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, found a {type(data).__name__}")
    return from_dict(SearchConfig, data or {}, str(path))


def save_config(config: SearchConfig, path: str | Path) -> None:
    from hwnas.files import write_atomically

    write_atomically(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def override(config: Any, **changes: Any) -> Any:
    """`replace` with the changes that are not None (CLI flags the user did not give stay as they were)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})


def parse_params(cls: type, values: dict[str, Any], where: str) -> Any:
    """A strategy's frozen Params dataclass from a mapping (defaults for absent keys, unknown keys refused)."""
    return from_dict(cls, dict(values), where)


def parse_assignments(items: list[str], where: str = "--param") -> dict[str, Any]:
    """`["tau0=5", "hard=true"]` -> {'tau0': 5, 'hard': True} (values read as YAML scalars)."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{where} '{item}': expected KEY=VALUE, e.g. tau0=5")
        try:
            result[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{where} '{item}': cannot read the value '{raw}'") from None
    return result
