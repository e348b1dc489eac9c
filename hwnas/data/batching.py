"""What in-memory and streamed splits share: their labels and normalisation (`LabelledSplit`), and the order of
one epoch, which indices each step of each rank gets, so both deliver the same batches; the order depends only on
(seed, epoch), so a resumed run repeats it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DistributedSampler


@dataclass
class LabelledSplit:
    """One split's labels, classes and normalisation; `ImageDataset` adds its decoded images, `StreamDataset` the
    reader and indices it decodes from."""

    name: str
    split: str
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


def count_batches(n: int, batch_size: int, world: int = 1) -> int:
    """Training steps of one epoch on each rank (`index_batches` with drop_last): full batches of this rank's
    n // world indices, at least one where it has any."""
    per_rank = n // world
    return max(1, per_rank // batch_size) if per_rank else 0


def index_batches(n: int, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True, rank: int = 0,
                  world: int = 1, drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Generator]]:
    """Index batches of one epoch, sharded over `world` ranks, each with the generator (seeded per step) its
    augmentation draws from. With `drop_last` (training) torch's DistributedSampler shards the shuffled indices,
    so every rank takes the same number of full batches (at least one); without it (evaluation) every index is
    visited once."""
    if drop_last:
        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed * 1_000_003,
                                     drop_last=True)
        sampler.set_epoch(epoch)
        shard = torch.tensor(list(sampler) if n // world else [], dtype=torch.long)
        steps = count_batches(n, batch_size, world)
    else:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)) if shuffle \
            else torch.arange(n)
        shard = order[rank::world]
        steps = -(-len(shard) // batch_size)
    for step in range(steps):
        augment = torch.Generator().manual_seed(step_seed(seed, epoch, rank, step))
        yield shard[step * batch_size: (step + 1) * batch_size], augment


def step_seed(seed: int, epoch: int, rank: int, step: int) -> int:
    """The seed of one step's augmentation: its own, so a worker process can augment that batch alone."""
    return (((seed * 1_000_003 + epoch) * 7919 + rank) * 1_000_033 + step) % 2 ** 63
