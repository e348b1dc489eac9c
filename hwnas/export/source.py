"""What is exported: a run directory's architecture and trained weights, or an architecture given by string,
arch.json or published name (randomly initialised, reproducibly). Weights must fit `Arch.build()` exactly, so
a supernet checkpoint (extra candidates, mixed layers) is refused rather than exported with leftovers.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwnas.arch import Arch
from hwnas.batchnorm import reestimate_batchnorm
from hwnas.config import SPLIT_OPTIONS
from hwnas.errors import ConfigError, HwnasError
from hwnas.files import read_yaml

WEIGHTS_FILE = "trained.pt"


@dataclass(frozen=True)
class ExportSource:
    """The network to export and where it came from."""

    arch: Arch
    name: str  # run folder name, published name, or 'arch-<hash>' for a string
    kind: str  # run | published | string | file
    path: Path | None = None  # the run directory or arch.json
    weights: Path | None = None  # trained.pt when the run has one
    data: str | None = None  # the run's dataset (config.yaml data.source), for calibration and validation
    data_options: dict[str, Any] = field(default_factory=dict)  # the run's split settings
    device: str | None = None  # the device the run searched for
    lut: Path | None = None  # the LUT the run searched with (config.yaml `lut`), for predictions on its device
    space: str | None = None  # the space searched (its calibration corrects predictions; none for other sources)

    @property
    def weights_sha256(self) -> str | None:
        return hashlib.sha256(self.weights.read_bytes()).hexdigest() if self.weights else None


def resolve_source(run: str | Path | None = None, arch: str | None = None, resolution: int | None = None,
                   num_classes: int | None = None) -> ExportSource:
    """A run directory (`runs/NAME`) or an architecture (string, arch.json, published name); exactly one."""
    if (run is None) == (arch is None):
        raise ConfigError("give a run directory (hwnas export runs/NAME) or --arch STRING|NAME, not both or neither")
    source = _from_run(Path(run)) if run is not None else _from_arch(arch)
    new = source.arch
    if resolution:
        new = new.with_resolution(resolution)
    if num_classes and num_classes != new.num_classes:
        if source.weights is not None:
            raise ConfigError(f"{source.weights}: trained for {new.num_classes} classes; --classes {num_classes} "
                              "would discard its classifier")
        new = _with_classes(new, num_classes)
    return replace(source, arch=new)


def _with_classes(arch: Arch, num_classes: int) -> Arch:
    from hwnas.arch import Layer

    last = arch.layers[-1]
    if last.op.kind != "fc":
        raise ConfigError(f"the last layer '{last.to_string(arch.act)}' is not a classifier (fc); cannot set classes")
    return Arch((*arch.layers[:-1], Layer(last.op, num_classes, last.stride, last.repeats)), arch.resolution,
                arch.act, arch.in_channels)


def _from_run(run: Path) -> ExportSource:
    if not run.is_dir():
        raise HwnasError(f"{run}: no such run directory")
    arch_file = run / "arch.json"
    if not arch_file.exists():
        raise HwnasError(f"{run}: no arch.json here (is it a run directory written by `hwnas search`?)")
    arch = Arch.load(arch_file)
    extra = _read_json(arch_file)
    config = _read_config(run / "config.yaml")
    data = config.get("data") or {}
    options = {k: data[k] for k in SPLIT_OPTIONS if k in data}
    weights = run / WEIGHTS_FILE
    return ExportSource(arch, run.resolve().name, "run", run, weights if weights.exists() else None,
                        data.get("source"), options, extra.get("device") or config.get("device"),
                        Path(config["lut"]) if config.get("lut") else None, space_name(extra))


def space_name(arch_json: dict[str, Any]) -> str | None:
    """The name of the space a run's arch.json was searched in (what its calibration is keyed by)."""
    name = arch_json.get("space_name") or arch_json.get("space")
    return name if isinstance(name, str) else None


def _read_json(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise HwnasError(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    return data if isinstance(data, dict) else {}


def _read_config(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    data = read_yaml(path, "config file")
    return data if isinstance(data, dict) else {}


def _from_arch(text: str) -> ExportSource:
    path = Path(text)
    if re.match(r"^(\d+|cells):", text):
        arch = Arch.parse(text)
        return ExportSource(arch, "arch-" + hashlib.sha1(arch.to_string().encode()).hexdigest()[:8], "string")
    if path.suffix == ".json":
        if not path.exists():
            raise HwnasError(f"{path}: no such file")
        return ExportSource(Arch.load(path), path.stem, "file", path)
    from hwnas.spaces.published import get_published

    return ExportSource(get_published(text), text, "published")


SETTLE_IMAGES = 64  # random images whose statistics an untrained network's BatchNorm layers take


def build_model(source: ExportSource, seed: int = 0) -> tuple[nn.Module, bool]:
    """`Arch.build()` with the run's trained weights (strictly: every key, no other), else seeded random init
    with settled BatchNorm statistics (see `settle_batchnorm`).

    Returns the model in eval mode and whether it carries trained weights.
    """
    torch.manual_seed(seed)
    model = source.arch.build().eval()
    if source.weights is None:
        generator = torch.Generator().manual_seed(seed)
        shape = (SETTLE_IMAGES, source.arch.in_channels, source.arch.resolution, source.arch.resolution)
        return settle_batchnorm(model, torch.randn(*shape, generator=generator)), False
    try:
        state = torch.load(source.weights, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a corrupt or foreign file
        raise HwnasError(f"{source.weights}: not a PyTorch state_dict ({error})") from None
    if not isinstance(state, dict):
        raise HwnasError(f"{source.weights}: expected the state_dict of Arch.build(), got {type(state).__name__}")
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = next((line.strip() for line in str(error).splitlines() if "size mismatch" in line), str(error))
        raise HwnasError(f"{source.weights}: does not fit the architecture in arch.json: {detail}") from None
    problems = []
    if result.unexpected_keys:
        problems.append(f"{len(result.unexpected_keys)} key(s) not in the network, e.g. "
                        f"'{result.unexpected_keys[0]}' (supernet leftovers?)")
    if result.missing_keys:
        problems.append(f"{len(result.missing_keys)} missing, e.g. '{result.missing_keys[0]}'")
    if problems:
        raise HwnasError(f"{source.weights}: does not fit the architecture in arch.json: {'; '.join(problems)}")
    return model.eval(), True


def settle_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 16) -> nn.Module:
    """Set every BatchNorm's running statistics to those of its inputs on `images` (a cumulative average).

    With PyTorch's default statistics (mean 0, variance 1) a deep random network's activations shrink layer by
    layer until its output is nearly a constant (the classifier bias), and a parity check on it nearly vacuous;
    settled, every layer carries signal of unit scale into the next.
    """
    return reestimate_batchnorm(model, model, (images[i: i + batch] for i in range(0, len(images), batch)))
