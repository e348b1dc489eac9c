"""Training one network: the weight optimizer, batch-norm recalibration of a network inside a supernet, and the
from-scratch training and accuracy of a derived network (`hwnas train`, the benchmarks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwnas.batchnorm import batchnorm_recalibrated
from hwnas.config import TrainConfig
from hwnas.data import SplitDataset, count_batches
from hwnas.ops import zero_init_residual_branches


def cosine_lr(base: float, position: float) -> float:
    """Cosine annealing from `base` to 0 over position 0..1."""
    return base * 0.5 * (1 + math.cos(math.pi * min(max(position, 0.0), 1.0)))


def warmup_cosine_lr(base: float, done: float, epochs: int, warmup_epochs: float) -> float:
    """The from-scratch schedule after `done` epochs of `epochs`: a linear rise to `base` over the warm-up (at most a
    fifth of the training), then cosine annealing to 0. Deep chain networks (22 layers) diverge in their first steps
    at the full rate on some seeds; the rise lets their batch-norm statistics settle first."""
    warmup = min(warmup_epochs, epochs / 5)
    if done < warmup:
        return base * done / warmup
    return cosine_lr(base, (done - warmup) / max(epochs - warmup, 1e-12))


BATCHNORM_CALIBRATION_BATCHES = 8


@torch.no_grad()
def recalibrated_hits(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
                      calibration: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      device: torch.device) -> tuple[float, float]:
    """(correct, seen) of `forward` (one network inside the supernet `model`) over `batches`, with the batch-norm
    statistics re-estimated for it on the first BATCHNORM_CALIBRATION_BATCHES of `calibration` and put back after."""
    with batchnorm_recalibrated(model, forward, (x.to(device) for x, _ in calibration),
                                BATCHNORM_CALIBRATION_BATCHES):
        correct = seen = 0.0
        for x, y in batches:
            x, y = x.to(device), y.to(device)
            correct += float((forward(x).argmax(1) == y).sum())
            seen += len(y)
    return correct, seen


def make_weight_optimizer(params: Iterable[nn.Parameter], lr: float, momentum: float,
                          weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(list(params), lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0)


# -- training a derived network from scratch ------------------------------------------------------------------
@dataclass
class TrainRecord:
    epoch: int
    loss: float
    train_acc: float
    lr: float
    seconds: float


def train_network(model: nn.Module, train: SplitDataset, *, epochs: int, batch_size: int, lr: float,
                  momentum: float, weight_decay: float, seed: int, label_smoothing: float = 0.0,
                  warmup_epochs: float = 0.0, zero_init_residual: bool = False,
                  on_epoch: Callable[[TrainRecord], None] | None = None,
                  on_step: Callable[[int, int, int], None] | None = None,
                  device: torch.device | None = None) -> list[TrainRecord]:
    """Plain supervised training (SGD, linear warm-up then cosine annealing) of a discrete network, on `device`
    (default: CPU); `zero_init_residual` first makes every residual block the identity (Goyal et al. 2017)."""
    device = device or torch.device("cpu")
    if zero_init_residual:
        zero_init_residual_branches(model)
    model.to(device)
    optimizer = make_weight_optimizer(model.parameters(), lr, momentum, weight_decay)
    records = []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        steps = count_batches(len(train), batch_size)
        total = correct = seen = 0.0
        current = lr
        for step, (x, y) in enumerate(train.batches(batch_size, seed=seed, epoch=epoch)):
            x, y = x.to(device), y.to(device)
            current = warmup_cosine_lr(lr, epoch + (step + 1) / steps, epochs, warmup_epochs)
            for group in optimizer.param_groups:
                group["lr"] = current
            logits = model(x)
            loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total += float(loss.detach()) * len(y)
            correct += float((logits.detach().argmax(1) == y).sum())
            seen += len(y)
            if on_step:
                on_step(epoch, step, steps)
        record = TrainRecord(epoch, total / max(seen, 1), correct / max(seen, 1), current, time.perf_counter() - start)
        records.append(record)
        if on_epoch:
            on_epoch(record)
    return records


def train_with(model: nn.Module, train: SplitDataset, settings: TrainConfig, *, seed: int,
               on_epoch: Callable[[TrainRecord], None] | None = None,
               on_step: Callable[[int, int, int], None] | None = None,
               device: torch.device | None = None) -> list[TrainRecord]:
    """`train_network` under `settings` (a run's `train` section, with any override already `replace`d in)."""
    return train_network(model, train, epochs=settings.epochs, batch_size=settings.batch_size, lr=settings.lr,
                         momentum=settings.momentum, weight_decay=settings.weight_decay, seed=seed,
                         label_smoothing=settings.label_smoothing, warmup_epochs=settings.warmup_epochs,
                         zero_init_residual=settings.zero_init_residual, on_epoch=on_epoch, on_step=on_step,
                         device=device)


@torch.no_grad()
def accuracy(model: nn.Module, data: SplitDataset, batch_size: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = seen = 0
    for x, y in data.batches(batch_size, shuffle=False, augment=False, drop_last=False):
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        seen += len(y)
    return correct / max(seen, 1)
