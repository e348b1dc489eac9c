"""Datasets for search and training: `load_dataset(name_or_path, resolution, split)`.

Sources: `digits` (scikit-learn's handwritten digits, embedded, upsampled: the default that needs no download),
`digits-hard` (the same digits under fixed distortions, clutter, colours and noise: where architectures differ),
`cifar10:PATH` / `cifar100:PATH` (python pickles), a folder of MNIST-format idx files (MNIST, Fashion-MNIST), or
an image folder with class sub-folders.
Splits are disjoint and fixed by `split_seed` (never by the search seed, so the test set does not move):
`test`, `val`, and `train` = `train_weights` + `train_arch` (bilevel search trains weights and architecture on
disjoint images; FBNet keeps 80/20).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from hwnas.data.sources import Source, read_source
from hwnas.data.transforms import normalize, random_hflip, random_shift
from hwnas.errors import ConfigError

SPLITS = ("train", "train_weights", "train_arch", "val", "test")


@dataclass
class ImageDataset:
    """One split in memory as uint8 images; `batch()` normalises (and augments when asked) in torch."""

    name: str
    split: str
    images: torch.Tensor  # uint8 (N, 3, R, R)
    labels: torch.Tensor  # int64 (N,)
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    flip: bool = True  # horizontal flips allowed by the source
    shift: int = 0  # random-translation augmentation in pixels (0: none); set for training splits

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def batch(self, indices: torch.Tensor | Sequence[int], generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels; augmented when a generator is given and the split augments."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.images[index]
        if generator is not None and self.shift:
            images = random_shift(images, self.shift, generator)
            if self.flip:
                images = random_hflip(images, generator)
        return normalize(images, self.mean, self.std), self.labels[index]

    def batches(self, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True, rank: int = 0,
                world: int = 1, augment: bool = True, drop_last: bool = True,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches for this rank; the order depends only on (seed, epoch), so a resume repeats it.
        Training drops the last partial batch (every rank takes the same number of steps); evaluation keeps it."""
        for index, generator in index_batches(len(self), batch_size, seed=seed, epoch=epoch, shuffle=shuffle,
                                              rank=rank, world=world, drop_last=drop_last):
            yield self.batch(index, generator if augment else None)


def index_batches(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0,
                  world: int = 1, drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Generator]]:
    """Index batches of one epoch, sharded over `world` ranks. With `drop_last` every rank takes the same number
    of full batches (at least one); without it, every index of this rank's shard is visited."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    shard = order[rank::world]
    if drop_last:
        shard = shard[: n // world]
        steps = max(1, len(shard) // batch_size) if len(shard) else 0
    else:
        steps = -(-len(shard) // batch_size)
    augment = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 7919 + rank + 1)
    for step in range(steps):
        yield shard[step * batch_size: (step + 1) * batch_size], augment


def _stratified_split(labels: torch.Tensor, fractions: dict[str, float], split_seed: int,
                      exclude: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Per class: shuffle (fixed seed) and cut by the fractions, in order; the last name takes the rest."""
    generator = torch.Generator().manual_seed(split_seed)
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in fractions}
    names = list(fractions)
    for label in torch.unique(labels).tolist():
        members = torch.nonzero((labels == label) & (~exclude if exclude is not None else True)).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        start = 0
        for name in names[:-1]:
            count = int(round(fractions[name] * len(members)))
            parts[name].append(members[start:start + count])
            start += count
        parts[names[-1]].append(members[start:])
    return {name: torch.sort(torch.cat(chunks)).values for name, chunks in parts.items()}


def split_indices(source: Source, *, test_fraction: float = 0.2, val_fraction: float = 0.1,
                  arch_fraction: float = 0.2, split_seed: int = 0) -> dict[str, torch.Tensor]:
    """Disjoint index sets for every split name in SPLITS."""
    for name, value in (("test_fraction", test_fraction), ("val_fraction", val_fraction),
                        ("arch_fraction", arch_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"data: {name} must be in [0, 1), got {value}")
    labels = source.labels
    if source.test_mask is not None:
        test = torch.nonzero(source.test_mask).flatten()
        rest = _stratified_split(labels, {"val": val_fraction, "train": 1.0}, split_seed, source.test_mask)
    else:
        first = _stratified_split(labels, {"test": test_fraction, "trainval": 1.0}, split_seed, None)
        test = first["test"]
        taken = torch.zeros(len(labels), dtype=torch.bool)
        taken[test] = True
        rest = _stratified_split(labels, {"val": val_fraction / (1 - test_fraction), "train": 1.0}, split_seed + 1,
                                 taken)
    taken = torch.ones(len(labels), dtype=torch.bool)
    taken[rest["train"]] = False
    train = _stratified_split(labels, {"train_arch": arch_fraction, "train_weights": 1.0}, split_seed + 2, taken)
    return {"train": rest["train"], "train_weights": train["train_weights"], "train_arch": train["train_arch"],
            "val": rest["val"], "test": test}


def load_splits(name_or_path: str, resolution: int, splits: Sequence[str] = SPLITS, *, test_fraction: float = 0.2,
                val_fraction: float = 0.1, arch_fraction: float = 0.2, split_seed: int = 0,
                augment_shift: int | None = None, limit: int = 0, train_limit: int = 0) -> dict[str, ImageDataset]:
    """Read the source once and return the named splits; training splits augment by random shifts (and flips).
    `limit` > 0 keeps a random subset of at most that many images per split (quick checks); `train_limit` > 0 keeps
    at most that many training images (weight and architecture images alike) and every test and val image."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"unknown data split '{unknown[0]}' (one of {', '.join(SPLITS)})")
    if resolution < 8:
        raise ConfigError(f"data resolution {resolution}: expected at least 8 pixels")
    for name, value in (("limit", limit), ("train_limit", train_limit)):
        if value < 0:
            raise ConfigError(f"data: {name} {value}: expected 0 (all images) or a positive count")
    source = read_source(name_or_path, resolution)
    indices = split_indices(source, test_fraction=test_fraction, val_fraction=val_fraction,
                            arch_fraction=arch_fraction, split_seed=split_seed)
    if 0 < train_limit < len(indices["train"]):
        generator = torch.Generator().manual_seed(split_seed + 4)
        kept = torch.zeros(len(source.labels), dtype=torch.bool)
        kept[indices["train"][torch.randperm(len(indices["train"]), generator=generator)[:train_limit]]] = True
        indices = {k: v[kept[v]] if k.startswith("train") else v for k, v in indices.items()}
    train_pixels = source.images[indices["train"]].float() / 255.0
    mean = tuple(float(v) for v in train_pixels.mean((0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in train_pixels.std((0, 2, 3)))
    if limit > 0:
        generator = torch.Generator().manual_seed(split_seed + 3)
        indices = {k: torch.sort(v[torch.randperm(len(v), generator=generator)][:limit]).values
                   for k, v in indices.items()}
    shift = resolution // 8 if augment_shift is None else augment_shift
    return {split: ImageDataset(source.name, split, source.images[indices[split]], source.labels[indices[split]],
                                source.classes, mean, std, source.flip, shift if split.startswith("train") else 0)
            for split in splits}


def load_dataset(name_or_path: str, resolution: int, split: str = "train", **options) -> ImageDataset:
    """One split of a dataset (see `load_splits` for the options)."""
    return load_splits(name_or_path, resolution, (split,), **options)[split]


__all__ = ["SPLITS", "ImageDataset", "index_batches", "load_dataset", "load_splits", "split_indices"]
