"""The search loop: supernet weights by SGD on the weight split, architecture steps on the disjoint architecture
split (interleaved so each split is seen once per epoch), data parallel across ranks (hwnas.distributed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hwnas.data import SplitDataset, count_batches
from hwnas.distributed import Ranks, average_gradients, broadcast_state, check_arch_identical, sum_over_ranks
from hwnas.errors import HwnasError
from hwnas.strategies.base import StepContext, Strategy
from hwnas.training import cosine_lr, recalibrated_hits


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
        weight_loss, correct, seen, arch_loss, arch_steps = sum_over_ranks(
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
        correct, seen = sum_over_ranks([correct, seen], self.ranks)
        return correct / max(seen, 1)
