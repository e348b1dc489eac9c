"""The shared training loop: supernet weights by SGD on the weight split, architecture steps on the disjoint
architecture split (interleaved so each split is seen once per epoch), data parallel across ranks.

Data parallelism (`torchrun --nproc_per_node N`): every rank holds the whole supernet; each sees its shard of
every batch order; after each backward the trainer averages gradients with `all_reduce` (weights, then
architecture parameters) so every rank applies the same update. This is what DistributedDataParallel does,
done explicitly because sampled subnetworks leave parameters unused in a step and architecture steps need the
same reduction. Architecture parameters are compared across ranks every epoch; a mismatch stops the run.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from hwnas.batchnorm import batchnorm_recalibrated
from hwnas.data import SplitDataset, count_batches
from hwnas.errors import HwnasError
from hwnas.strategies.base import StepContext, Strategy


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(name: str, ranks: Ranks | None = None) -> torch.device:
    """`auto` -> this rank's GPU when CUDA is available, else the CPU; otherwise the torch device named."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HwnasError(f"torch_device '{name}': expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HwnasError(f"torch_device '{name}': this torch has no CUDA device; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def _reduce_device() -> torch.device:
    """Where collectives run: NCCL reduces CUDA tensors only, gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_ranks(backend: str | None = None) -> Ranks:
    """Join the process group torchrun set up (WORLD_SIZE > 1), gloo on CPU and nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return Ranks(dist.get_rank(), dist.get_world_size())


def average_gradients(params: Iterable[torch.Tensor], ranks: Ranks) -> None:
    """Average `.grad` over ranks in one flat all_reduce (parameters without a gradient are left out: all ranks
    sample the same paths, so they agree on which those are)."""
    if not ranks.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for grad, mean in zip(grads, mean_over_ranks(grads, ranks.world)):
        grad.copy_(mean)


def mean_over_ranks(tensors: Sequence[torch.Tensor], world: int) -> list[torch.Tensor]:
    """Each tensor's element-wise mean over the `world` ranks, in one flat all_reduce; new tensors, on the inputs'
    devices."""
    if not tensors:
        return []
    device = _reduce_device()
    flat = torch.cat([t.detach().reshape(-1).to(device) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    means, offset = [], 0
    for t in tensors:
        means.append(flat[offset: offset + t.numel()].view_as(t).to(t.device))
        offset += t.numel()
    return means


def broadcast_state(module: nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers to every rank (start of run; BatchNorm statistics each epoch)."""
    if ranks.enabled:
        device = _reduce_device()
        for tensor in [*module.parameters(), *module.buffers()]:
            staged = tensor.data.to(device)
            dist.broadcast(staged, 0)
            tensor.data.copy_(staged)


def check_arch_identical(strategy: Strategy, ranks: Ranks) -> bool:
    """True when every rank holds bit-identical architecture parameters."""
    if not ranks.enabled:
        return True
    device = _reduce_device()
    local = torch.cat([p.detach().reshape(-1).double().to(device) for p in strategy.arch_parameters()]
                      or [torch.zeros(1, device=device)])
    gathered = [torch.empty_like(local) for _ in range(ranks.world)]
    dist.all_gather(gathered, local)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def _sum_over_ranks(values: Sequence[float], ranks: Ranks) -> list[float]:
    if not ranks.enabled:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def cosine_lr(base: float, position: float) -> float:
    """Cosine annealing from `base` to 0 over position 0..1."""
    return base * 0.5 * (1 + math.cos(math.pi * min(max(position, 0.0), 1.0)))


@dataclass
class EpochRecord:
    """One finished epoch, as history.csv stores it."""

    epoch: int
    weight_loss: float
    arch_loss: float
    train_acc: float
    val_acc: float
    expected_ms: float
    budget_ms: float
    lr: float
    seconds: float
    arch_steps: int
    status: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, Any]:
        base = {k: v for k, v in self.__dict__.items() if k != "status"}
        return {**base, **self.status}


@dataclass(kw_only=True)
class SearchLoop:
    """Runs search epochs for one strategy over the weight, architecture and validation splits (each epoch's record
    carries the budget of the strategy's problem)."""

    strategy: Strategy
    weights: SplitDataset
    arch: SplitDataset
    val: SplitDataset
    optimizer: torch.optim.Optimizer
    epochs: int
    warmup_epochs: int
    batch_size: int
    base_lr: float
    seed: int
    grad_clip: float = 5.0
    ranks: Ranks = field(default_factory=Ranks)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # where the supernet lives
    on_step: Callable[[int, int, int, dict[str, float]], None] | None = None  # (epoch, step, steps, metrics)

    def steps_per_epoch(self) -> int:
        return count_batches(len(self.weights), self.batch_size, self.ranks.world)

    def run(self, start_epoch: int, on_epoch: Callable[[EpochRecord], None]) -> None:
        for epoch in range(start_epoch, self.epochs):
            record = self.run_epoch(epoch)
            on_epoch(record)
            if getattr(self.strategy, "should_stop", lambda: False)():  # a strategy's early stop (OStr: cells settled)
                break

    def run_epoch(self, epoch: int) -> EpochRecord:
        start = time.perf_counter()
        warmup = epoch < self.warmup_epochs
        strategy = self.strategy
        strategy.start_epoch(epoch, self.epochs, warmup)
        # batches are drawn as the steps reach them (a streamed split holds only the next few in memory)
        weight_batches = self.weights.batches(self.batch_size, seed=self.seed, epoch=epoch, rank=self.ranks.rank,
                                              world=self.ranks.world)
        arch_batches = iter(()) if warmup else self.arch.batches(
            self.batch_size, seed=self.seed + 1, epoch=epoch, rank=self.ranks.rank, world=self.ranks.world)
        steps = self.steps_per_epoch()
        arch_count = 0 if warmup else count_batches(len(self.arch), self.batch_size, self.ranks.world)
        totals = {"weight_loss": 0.0, "arch_loss": 0.0, "correct": 0.0, "seen": 0.0, "arch_steps": 0.0}
        lr = self.base_lr
        for step, (x, y) in enumerate(weight_batches):
            x, y = x.to(self.device), y.to(self.device)
            lr = cosine_lr(self.base_lr, (epoch + step / steps) / self.epochs)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            strategy.supernet.train()
            out = strategy.weight_loss(x, y)
            if not torch.isfinite(out.loss):
                raise HwnasError(f"epoch {epoch} step {step}: the weight loss is {out.loss.item()}; lower "
                                 "--weight-lr or check the data")
            self.optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            params = strategy.weight_parameters()
            average_gradients(params, self.ranks)
            if self.grad_clip:
                nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.optimizer.step()
            totals["weight_loss"] += float(out.loss.detach()) * len(y)
            totals["correct"] += float((out.logits.detach().argmax(1) == y).sum())
            totals["seen"] += len(y)
            metrics = {"loss": float(out.loss.detach()), **out.metrics}
            due = (step + 1) * arch_count // steps - step * arch_count // steps
            for _ in range(due):
                xa, ya = (t.to(self.device) for t in next(arch_batches))
                for p in strategy.arch_parameters():
                    p.grad = None
                arch_metrics = strategy.arch_backward(xa, ya, StepContext((x, y), self.optimizer, lr, epoch, step))
                average_gradients(strategy.arch_parameters(), self.ranks)
                strategy.arch_update()
                totals["arch_loss"] += arch_metrics.get("arch_loss", 0.0)
                totals["arch_steps"] += 1
                metrics.update(arch_metrics)
            if self.on_step:
                self.on_step(epoch, step, steps, metrics)
        broadcast_state(strategy.supernet, self.ranks)
        if not check_arch_identical(strategy, self.ranks):
            raise HwnasError(f"epoch {epoch}: architecture parameters differ between ranks; a strategy must draw "
                             "every sample from its seeded generator")
        weight_loss, correct, seen, arch_loss, arch_steps = _sum_over_ranks(
            [totals["weight_loss"], totals["correct"], totals["seen"], totals["arch_loss"], totals["arch_steps"]],
            self.ranks)
        return EpochRecord(epoch=epoch, weight_loss=weight_loss / max(seen, 1),
                           arch_loss=arch_loss / max(arch_steps, 1), train_acc=correct / max(seen, 1),
                           val_acc=self.validate(), expected_ms=strategy.expected_latency_ms(),
                           budget_ms=strategy.problem.budget_ms, lr=lr, seconds=time.perf_counter() - start,
                           arch_steps=int(arch_steps / self.ranks.world), status=strategy.status())

    @torch.no_grad()
    def validate(self) -> float:
        """Accuracy on the validation split of the strategy's current choice (its `eval_logits`), with batch-norm
        statistics re-estimated for that choice first and put back after."""
        calibration = self.weights.batches(self.batch_size, seed=self.seed, shuffle=False, rank=self.ranks.rank,
                                           world=self.ranks.world, augment=False)
        batches = self.val.batches(256, shuffle=False, rank=self.ranks.rank, world=self.ranks.world, augment=False,
                                   drop_last=False)
        correct, seen = recalibrated_hits(self.strategy.supernet, self.strategy.eval_logits, calibration, batches,
                                          self.device)
        correct, seen = _sum_over_ranks([correct, seen], self.ranks)
        return correct / max(seen, 1)


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
                  on_epoch: Callable[[TrainRecord], None] | None = None,
                  on_step: Callable[[int, int, int], None] | None = None,
                  device: torch.device | None = None) -> list[TrainRecord]:
    """Plain supervised training (SGD, cosine schedule) of a discrete network, on `device` (default: CPU)."""
    device = device or torch.device("cpu")
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
            current = cosine_lr(lr, (epoch + step / steps) / epochs)
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


@torch.no_grad()
def accuracy(model: nn.Module, data: SplitDataset, batch_size: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = seen = 0
    for x, y in data.batches(batch_size, shuffle=False, augment=False, drop_last=False):
        correct += int((model(x.to(device)).argmax(1).cpu() == y).sum())
        seen += len(y)
    return correct / max(seen, 1)
