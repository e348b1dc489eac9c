"""Splits read from disk batch by batch: a torch Dataset decodes a step's images by index (from their files, or
from the cache of decoded images), a DataLoader's worker processes decode, augment and normalise the next steps'
batches while the model trains on this one, so memory holds only a few batches whatever the dataset's size. The
order of indices and each step's augmentation generator are `index_batches`' (DistributedSampler under data
parallelism), as for a split in memory: both deliver the same batches."""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import torch
from torch.utils.data import DataLoader, Dataset

from hwnas.data.batching import LabelledSplit, index_batches
from hwnas.data.transforms import prepare
from hwnas.errors import ConfigError

PREFETCH_BATCHES = 2  # batches each worker decodes ahead of the training step (DataLoader's prefetch_factor)


class ImageReader(Protocol):
    """What a streamed split reads images from: a source's `Catalog` or its `CachedImages`."""

    resolution: int
    decodes_files: bool

    def __len__(self) -> int: ...

    def read(self, index: int) -> torch.Tensor: ...

    def read_many(self, indices: Sequence[int]) -> torch.Tensor: ...


class _Batches(Dataset):
    """Batch k of a plan: the reader's images `batches[k]` as uint8 (n, 3, R, R), decoded in a worker process and,
    with `finish`, made ready there (augmented by a generator seeded `seeds[k]`, normalised); the one-line error
    text instead where an image cannot be read (a worker's exception would reach the user as a traceback)."""

    def __init__(self, reader: ImageReader, batches: Sequence[Sequence[int]],
                 finish: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
                 seeds: Sequence[int | None] = ()):
        self.reader, self.batches, self.finish, self.seeds = reader, batches, finish, seeds

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> torch.Tensor | str:
        try:
            images = self.reader.read_many(self.batches[k])
        except ConfigError as error:
            return str(error)
        if self.finish is None:
            return images
        seed = self.seeds[k]
        return self.finish(images, generator=None if seed is None else torch.Generator().manual_seed(seed))


def usable_workers(workers: int) -> int:
    """`workers`, or 0 inside a daemonic process (a multiprocessing pool's worker may not start processes)."""
    return 0 if multiprocessing.current_process().daemon else workers


def _start_method():
    """Fork on Linux, even inside a process that was itself spawned (a spawned worker imports torch again: seconds,
    per epoch); the platform's default elsewhere."""
    return multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None


def decode_batches(reader: ImageReader, batches: Sequence[Sequence[int]], workers: int,
                   finish: Callable[[torch.Tensor, torch.Generator | None], torch.Tensor] | None = None,
                   seeds: Sequence[int | None] = ()) -> Iterator[torch.Tensor]:
    """The reader's images per batch of indices, in order, decoded (and finished, see `_Batches`) by `workers`
    processes, each a few batches ahead (0: here, when asked)."""
    workers = usable_workers(workers)
    loader = DataLoader(_Batches(reader, batches, finish, seeds), batch_size=None, num_workers=workers,
                        prefetch_factor=PREFETCH_BATCHES if workers else None,
                        multiprocessing_context=_start_method() if workers else None)
    for images in loader:
        if isinstance(images, str):
            raise ConfigError(images)
        yield images


def spans(n: int, size: int) -> list[range]:
    return [range(start, min(start + size, n)) for start in range(0, n, size)]


@dataclass(kw_only=True)
class StreamDataset(LabelledSplit):
    """One split decoded on demand: `indices` into the reader's images, with their labels; the same face as
    `ImageDataset` (len, num_classes, batch, batches), so the training loop does not know which it has."""

    reader: ImageReader
    indices: torch.Tensor  # int64 (N,): images of the source in this split
    workers: int = 2  # DataLoader worker processes decoding images (0: in this process)

    @property
    def resolution(self) -> int:
        return self.reader.resolution

    def batch(self, indices: torch.Tensor | Sequence[int], generator: torch.Generator | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float images and labels, decoded here; augmented when a generator is given and the split
        augments."""
        index = torch.as_tensor(indices, dtype=torch.long)
        images = self.reader.read_many(self.indices[index].tolist())
        return prepare(images, self.mean, self.std, self.shift, self.flip, generator), self.labels[index]

    def batches(self, batch_size: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = True, rank: int = 0,
                world: int = 1, augment: bool = True, drop_last: bool = True,
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of batches for this rank, as `ImageDataset.batches` orders and augments them; worker
        processes decode, augment and normalise them a few batches ahead."""
        plan = list(index_batches(len(self), batch_size, seed=seed, epoch=epoch, shuffle=shuffle, rank=rank,
                                  world=world, drop_last=drop_last))
        finish = partial(prepare, mean=self.mean, std=self.std, shift=self.shift, flip=self.flip)
        seeds = [generator.initial_seed() if augment else None for _, generator in plan]
        images = decode_batches(self.reader, [self.indices[index].tolist() for index, _ in plan], self.workers,
                                finish, seeds)
        for (index, _), x in zip(plan, images):
            yield x, self.labels[index]

