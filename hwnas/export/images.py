"""Images for export: parity inputs, int8 calibration images (from the search's training split) and labelled
validation images (for the int8 accuracy drop). Without a dataset, parity and calibration use seeded
standard-normal images (the scale of normalised inputs) and the accuracy drop is not measured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from hwnas.arch import Arch
from hwnas.errors import HwnasError


@dataclass(frozen=True)
class ImageSource:
    """A dataset by name or path (`hwnas.data.load_dataset`), with the split settings of the run."""

    name: str | None  # None: random images, no labels
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def described(self) -> str:
        return self.name or "random normal images (no dataset)"


def _load(source: ImageSource, arch: Arch, split: str):
    try:
        from hwnas.data import load_dataset
    except ImportError:
        raise HwnasError("this hwnas has no hwnas.data module to read datasets from; leave out --data") from None
    dataset = load_dataset(source.name, arch.resolution, split, **source.options)
    if len(dataset) == 0:
        raise HwnasError(f"dataset '{source.name}' has no images in its {split} split")
    return dataset


def _evenly(count: int, available: int) -> torch.Tensor:
    """`count` indices spread evenly over `available` (stable, so reruns calibrate on the same images)."""
    count = min(count, available)
    return torch.linspace(0, available - 1, count).round().long()


def random_images(arch: Arch, count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(count, arch.in_channels, arch.resolution, arch.resolution, generator=generator)


def calibration_images(source: ImageSource, arch: Arch, count: int, seed: int = 0) -> torch.Tensor:
    """Images whose activation ranges set int8 scales: the training split when there is a dataset."""
    if source.name is None:
        return random_images(arch, count, seed + 1)
    dataset = _load(source, arch, "train")
    return dataset.batch(_evenly(count, len(dataset)))[0]


def validation_set(source: ImageSource, arch: Arch, count: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Labelled validation images (the run's val split), or None without a dataset."""
    if source.name is None:
        return None
    dataset = _load(source, arch, "val")
    if dataset.num_classes != arch.num_classes:
        raise HwnasError(f"dataset '{source.name}' has {dataset.num_classes} classes, the network "
                         f"{arch.num_classes} outputs")
    return dataset.batch(_evenly(count, len(dataset)))


def parity_images(validation: tuple[torch.Tensor, torch.Tensor] | None, arch: Arch, count: int,
                  seed: int = 0) -> torch.Tensor:
    """Inputs the exported files must reproduce PyTorch on: validation images, else seeded random ones."""
    if validation is None:
        return random_images(arch, count, seed)
    images = validation[0]
    return images[_evenly(count, len(images))]
