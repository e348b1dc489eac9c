"""Datasets for search and training: `load_splits(name_or_path, resolution, splits)`.

Sources: `digits` (scikit-learn's handwritten digits, embedded, upsampled: the default that needs no download),
`digits-hard` (the same digits under fixed distortions, clutter, colours and noise: where architectures differ),
`cifar10:PATH` / `cifar100:PATH` (python pickles), a folder of MNIST-format idx files (MNIST, Fashion-MNIST), or
an image folder with class sub-folders.
Splits are disjoint and fixed by `split_seed` (never by the search seed, so the test set does not move):
`test`, `val`, and `train` = `train_weights` + `train_arch` (bilevel search trains weights and architecture on
disjoint images; FBNet keeps 80/20); `split_record` describes them for a run folder.
Splits whose decoded images fit IN_MEMORY_BYTES are decoded into memory (`ImageDataset`); larger ones stream from
disk (`hwnas.data.streaming.StreamDataset`), optionally from a cache of decoded images (`hwnas.data.cache`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hwnas.data.batching import LabelledSplit, count_batches, index_batches
from hwnas.data.sources import Catalog, read_catalog
from hwnas.data.streaming import ImageReader, StreamDataset, decode_batches, spans
from hwnas.data.transforms import prepare
from hwnas.errors import ConfigError

SPLITS = ("train", "train_weights", "train_arch", "val", "test")
LOADERS = ("auto", "memory", "stream")
IN_MEMORY_BYTES = 1 << 30  # loader 'auto': splits whose decoded images (3·R² bytes each) fit in 1 GiB load into
#                            memory; larger ones stream from disk (CIFAR-10 at 32 px: 0.18 GB; at 224 px: 9 GB)
STATS_IMAGES = 2048  # training images (evenly spaced) the per-channel mean and deviation are measured on
STATS_BATCH = 64


@dataclass(kw_only=True)
class ImageDataset(LabelledSplit):
    """One split in memory as uint8 images; `batch()` normalises (and augments when asked) in torch."""

    images: torch.Tensor  # uint8 (N, 3, R, R)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def batch(self, indices: torch.Tensor | Sequence[int], generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels; augmented when a generator is given and the split augments."""
        index = torch.as_tensor(indices, dtype=torch.long)
        return prepare(self.images[index], self.mean, self.std, self.shift, self.flip, generator), self.labels[index]

    def batches(self, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True, rank: int = 0,
                world: int = 1, augment: bool = True, drop_last: bool = True,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches for this rank; the order depends only on (seed, epoch), so a resume repeats it.
        Training drops the last partial batch (every rank takes the same number of steps); evaluation keeps it."""
        for index, generator in index_batches(len(self), batch_size, seed=seed, epoch=epoch, shuffle=shuffle,
                                              rank=rank, world=world, drop_last=drop_last):
            yield self.batch(index, generator if augment else None)


SplitDataset = ImageDataset | StreamDataset  # what load_splits returns per split


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


def split_indices(source: Catalog, *, test_fraction: float = 0.2, val_fraction: float = 0.1,
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


def _check_options(resolution: int, options: dict[str, Any]) -> None:
    if resolution < 8:
        raise ConfigError(f"data resolution {resolution}: expected at least 8 pixels")
    for name in ("limit", "train_limit"):
        if options.get(name, 0) < 0:
            raise ConfigError(f"data: {name} {options[name]}: expected 0 (all images) or a positive count")


def chosen_indices(catalog: Catalog, *, test_fraction: float = 0.2, val_fraction: float = 0.1,
                   arch_fraction: float = 0.2, split_seed: int = 0, train_limit: int = 0) -> dict[str, torch.Tensor]:
    """`split_indices`, the training splits cut to `train_limit` images (seeded by `split_seed`)."""
    indices = split_indices(catalog, test_fraction=test_fraction, val_fraction=val_fraction,
                            arch_fraction=arch_fraction, split_seed=split_seed)
    if 0 < train_limit < len(indices["train"]):
        generator = torch.Generator().manual_seed(split_seed + 4)
        kept = torch.zeros(len(catalog), dtype=torch.bool)
        kept[indices["train"][torch.randperm(len(indices["train"]), generator=generator)[:train_limit]]] = True
        indices = {k: v[kept[v]] if k.startswith("train") else v for k, v in indices.items()}
    return indices


def limited(indices: dict[str, torch.Tensor], limit: int, split_seed: int) -> dict[str, torch.Tensor]:
    """At most `limit` images per split (a seeded random subset; 0: all), for quick checks."""
    if limit <= 0:
        return indices
    generator = torch.Generator().manual_seed(split_seed + 3)
    return {k: torch.sort(v[torch.randperm(len(v), generator=generator)][:limit]).values for k, v in indices.items()}


def stats_sample(train: torch.Tensor) -> torch.Tensor:
    """At most STATS_IMAGES training indices, evenly spaced (the same on every rank and run)."""
    if len(train) <= STATS_IMAGES:
        return train
    return train[torch.linspace(0, len(train) - 1, STATS_IMAGES).round().long()]


def channel_stats(batches: Iterable[torch.Tensor]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation (at least 1e-3) of uint8 image batches on the [0, 1] scale."""
    total = squares = 0.0
    count = 0
    for images in batches:
        x = images.double() / 255.0
        total = total + x.sum((0, 2, 3))
        squares = squares + (x * x).sum((0, 2, 3))
        count += x.numel() // x.shape[1]
    mean = total / count
    variance = (squares - count * mean * mean) / max(count - 1, 1)
    return tuple(float(v) for v in mean), tuple(max(float(v), 1e-3) for v in variance.clamp(min=0).sqrt())


def _read_all(reader: ImageReader, indices: torch.Tensor, workers: int) -> torch.Tensor:
    """uint8 images `indices` of `reader`, decoded by worker processes where that means decoding files."""
    if reader.decodes_files and workers and len(indices) > STATS_BATCH:
        return torch.cat(list(decode_batches(reader, _batched(indices), workers)))
    return reader.read_many(indices.tolist())


def _batched(indices: torch.Tensor) -> list[list[int]]:
    return [indices[span].tolist() for span in spans(len(indices), STATS_BATCH)]


def _chosen(name_or_path: str, resolution: int, test_fraction: float, val_fraction: float, arch_fraction: float,
            split_seed: int, train_limit: int, limit: int = 0) -> tuple[Catalog, dict[str, torch.Tensor], dict]:
    """The source's catalog and each split's indices before `limit` (options checked first), and the options that
    chose them: what `load_splits` loads and `split_record` describes."""
    options = {"test_fraction": test_fraction, "val_fraction": val_fraction, "arch_fraction": arch_fraction,
               "split_seed": split_seed, "train_limit": train_limit}
    _check_options(resolution, {**options, "limit": limit})
    catalog = read_catalog(name_or_path, resolution)
    return catalog, chosen_indices(catalog, **options), options


def load_splits(name_or_path: str, resolution: int, splits: Sequence[str] = SPLITS, *, test_fraction: float = 0.2,
                val_fraction: float = 0.1, arch_fraction: float = 0.2, split_seed: int = 0,
                augment_shift: int | None = None, limit: int = 0, train_limit: int = 0, loader: str = "auto",
                workers: int = 2, cache: str | None = None) -> dict[str, SplitDataset]:
    """The named splits; training splits augment by random crops after padding (and flips where the source allows).
    `limit` > 0 keeps a random subset of at most that many images per split (quick checks); `train_limit` > 0 keeps
    at most that many training images (weight and architecture images alike) and every test and val image.
    `loader`: 'memory' decodes the splits into memory, 'stream' decodes batch by batch in `workers` processes,
    'auto' streams only what exceeds IN_MEMORY_BYTES. `cache`: a folder for the decoded images (built once)."""
    unknown = [s for s in splits if s not in SPLITS]
    if unknown:
        raise ConfigError(f"unknown data split '{unknown[0]}' (one of {', '.join(SPLITS)})")
    if loader not in LOADERS:
        raise ConfigError(f"data: loader '{loader}': expected one of {', '.join(LOADERS)}")
    if workers < 0:
        raise ConfigError(f"data: workers {workers}: expected 0 (decode in the training process) or more")
    catalog, indices, _ = _chosen(name_or_path, resolution, test_fraction, val_fraction, arch_fraction, split_seed,
                                  train_limit, limit)
    sample = stats_sample(indices["train"])  # before `limit`: a quick check normalises as the whole run does
    indices = limited(indices, limit, split_seed)
    reader: ImageReader = catalog
    if cache:
        from hwnas.data.cache import open_cache

        reader = open_cache(catalog, name_or_path, cache, workers)
    needed = torch.unique(torch.cat([indices[s] for s in splits]))
    in_memory = loader == "memory" or (loader == "auto" and len(needed) * 3 * resolution ** 2 <= IN_MEMORY_BYTES)
    shift = resolution // 8 if augment_shift is None else augment_shift
    def labelled(split: str, mean: tuple[float, ...], std: tuple[float, ...]) -> dict:
        return {"name": catalog.name, "split": split, "labels": catalog.labels[indices[split]],
                "classes": catalog.classes, "mean": mean, "std": std, "flip": catalog.flip,
                "shift": shift if split.startswith("train") else 0}

    if in_memory:
        rows = torch.unique(torch.cat([needed, sample]))
        pixels = _read_all(reader, rows, workers)
        position = torch.full((len(catalog),), -1, dtype=torch.long)
        position[rows] = torch.arange(len(rows))
        mean, std = channel_stats(pixels[position[sample[c]]] for c in spans(len(sample), STATS_BATCH))
        return {split: ImageDataset(images=pixels[position[indices[split]]], **labelled(split, mean, std))
                for split in splits}
    mean, std = channel_stats(decode_batches(reader, _batched(sample), workers))
    return {split: StreamDataset(reader=reader, indices=indices[split], workers=workers,
                                 **labelled(split, mean, std))
            for split in splits}


def load_dataset(name_or_path: str, resolution: int, split: str = "train", **options) -> SplitDataset:
    """One split of a dataset (see `load_splits` for the options)."""
    return load_splits(name_or_path, resolution, (split,), **options)[split]


def split_record(name_or_path: str, resolution: int, *, test_fraction: float = 0.2, val_fraction: float = 0.1,
                 arch_fraction: float = 0.2, split_seed: int = 0, limit: int = 0, train_limit: int = 0,
                 ) -> dict[str, Any]:
    """What a run's splits are, JSON-ready: the source and its fingerprint (classes, labels, file names and sizes),
    the split options, and per split its size and the sha256 of its sorted index list. Two runs (or ranks) trained
    on the same images exactly when their records are equal."""
    catalog, indices, options = _chosen(name_or_path, resolution, test_fraction, val_fraction, arch_fraction,
                                        split_seed, train_limit, limit)
    indices = limited(indices, limit, split_seed)
    return {"source": name_or_path, "name": catalog.name, "images": len(catalog), "classes": len(catalog.classes),
            "fingerprint": catalog.fingerprint(), "options": {**options, "limit": limit},
            "splits": {name: {"size": len(index), "sha256": hashlib.sha256(
                index.numpy().astype("<i8").tobytes()).hexdigest()} for name, index in indices.items()}}


__all__ = ["IN_MEMORY_BYTES", "LOADERS", "SPLITS", "ImageDataset", "SplitDataset", "StreamDataset", "count_batches",
           "index_batches", "load_dataset", "load_splits", "split_indices", "split_record"]
