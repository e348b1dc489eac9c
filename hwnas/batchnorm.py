"""Batch-norm running statistics re-estimated for one network: for an untrained network before export, and for a
supernet's current choice before validation."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice

import torch
from torch import nn


def _tracking_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, forward: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor],
                         ) -> nn.Module:
    """Set every batch norm's running statistics to the cumulative average over `forward` of `batches` (momentum
    kept), and return `model` in eval mode."""
    norms = _tracking_norms(model)
    if norms:
        momenta = [m.momentum for m in norms]
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # a cumulative average, not an exponential one
        model.train()
        try:
            for x in batches:
                forward(x)
        finally:
            for norm, momentum in zip(norms, momenta):
                norm.momentum = momentum
    return model.eval()


@contextmanager
def batchnorm_recalibrated(model: nn.Module, forward: Callable[[torch.Tensor], object],
                           batches: Iterable[torch.Tensor], count: int) -> Iterator[None]:
    """`model` in eval mode with its batch-norm statistics re-estimated on `count` of `batches`, the previous ones
    restored on exit. Statistics gathered over a supernet's sampled paths fit none of its networks (validation of
    the current choice can read as chance), the reason one-shot NAS re-estimates them (SPOS, OFA)."""
    saved = [(m, m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in _tracking_norms(model)]
    try:
        reestimate_batchnorm(model, forward, islice(batches, count))
        yield
    finally:
        for norm, mean, var, tracked in saved:
            norm.running_mean.copy_(mean)
            norm.running_var.copy_(var)
            norm.num_batches_tracked.copy_(tracked)
