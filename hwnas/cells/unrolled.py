"""DARTS' second-order architecture gradient (Liu et al. 2019, Eqs. 6-8; thesis Eq. 2.9):

    ∇_α L_val(w', α) − ξ ∇²_{α,w} L_train(w, α) ∇_{w'} L_val(w', α),   w' = w − ξ ∇_w L_train(w, α),

with the Hessian-vector product by central finite differences (Eq. 8):
(∇_α L_train(w⁺, α) − ∇_α L_train(w⁻, α)) / 2ε, w± = w ± ε ∇_{w'} L_val(w', α), ε = r / ‖∇_{w'} L_val(w', α)‖.
As in DARTS' code, the virtual step w' follows the weight optimizer (SGD with momentum and weight decay).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class UnrolledGrads:
    """The architecture gradient of the unrolled objective, its direct term ∇_α L_val(w', α), and L_val(w', α)."""

    total: list[torch.Tensor]
    direct: list[torch.Tensor]
    val_loss: float


def sgd_settings(optimizer: torch.optim.Optimizer | None) -> tuple[float, float]:
    """(momentum, weight decay) of the weight optimizer's first group (0, 0 for others)."""
    if optimizer is None or not optimizer.param_groups:
        return 0.0, 0.0
    group = optimizer.param_groups[0]
    return float(group.get("momentum", 0.0) or 0.0), float(group.get("weight_decay", 0.0) or 0.0)


def _grads(loss: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, list(tensors), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


def unrolled_arch_grads(loss_fn: LossFn, weights: Sequence[torch.nn.Parameter], alphas: Sequence[torch.Tensor],
                        train_batch: Batch, val_batch: Batch, lr: float, *, momentum: float = 0.0,
                        weight_decay: float = 0.0, momentum_buffers: Sequence[torch.Tensor | None] | None = None,
                        r: float = 0.01) -> UnrolledGrads:
    """Second-order DARTS gradient for `alphas`. `loss_fn(x, y)` evaluates the network loss with the current
    values of `weights` and `alphas`; the weights are restored before returning."""
    weights = list(weights)
    saved = [w.detach().clone() for w in weights]
    buffers = list(momentum_buffers) if momentum_buffers is not None else [None] * len(weights)
    try:
        train_grads = _grads(loss_fn(*train_batch), weights)
        with torch.no_grad():
            for w, g, buf in zip(weights, train_grads, buffers):
                step = g + weight_decay * w
                if momentum and buf is not None:
                    step = step + momentum * buf
                w.sub_(lr * step)
        val_loss = loss_fn(*val_batch)
        grads = _grads(val_loss, [*alphas, *weights])
        direct, val_w = grads[: len(alphas)], grads[len(alphas):]
        norm = torch.sqrt(sum((g.to(torch.float64) ** 2).sum() for g in val_w))
        eps = r / float(norm) if float(norm) > 0 else 0.0
        if eps == 0.0:
            return UnrolledGrads([d.clone() for d in direct], [d.clone() for d in direct], float(val_loss.detach()))
        with torch.no_grad():
            for w, s, v in zip(weights, saved, val_w):
                w.copy_(s + eps * v)
        plus = _grads(loss_fn(*train_batch), alphas)
        with torch.no_grad():
            for w, s, v in zip(weights, saved, val_w):
                w.copy_(s - eps * v)
        minus = _grads(loss_fn(*train_batch), alphas)
        total = [d - lr * (p - m) / (2 * eps) for d, p, m in zip(direct, plus, minus)]
        return UnrolledGrads(total, [d.clone() for d in direct], float(val_loss.detach()))
    finally:
        with torch.no_grad():
            for w, s in zip(weights, saved):
                w.copy_(s)
