"""Fused mixed aggregation y = Σ_k w_k · o_k in Triton (same contract as `reference.mixed_sum`).

Forward reads each candidate output once and writes y once; a zero weight masks its candidate's loads off, so a
masked (one-hot, binary-gate) mixture reads only the live paths. Backward reads dL/dy once and writes every
dL/do_k plus per-block partial sums of dL/dw_k = Σ dL/dy · o_k in the same pass. Weights are (K,) or per sample
(N, K) (Gumbel); they stay scalars in registers, never broadcast to the activation shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton.language as tl

from hwnas.kernels.contract import result_dtype
from hwnas.kernels.runtime import batch_dense, cdiv, jit, like_layout, require_triton

BLOCK = 1024


def _mixed_sum_fwd(outs, w_ptr, y_ptr, sample_size, stride_wn, stride_wk, K: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(1)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    base = n.to(tl.int64) * sample_size
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    for k in tl.static_range(K):
        w = tl.load(w_ptr + n * stride_wn + k * stride_wk).to(tl.float32)
        live = offs < tl.where(w != 0, sample_size, 0)  # zero weight: no read at all
        acc += w * tl.load(outs[k] + base + offs, mask=live, other=0.0).to(tl.float32)
    tl.store(y_ptr + base + offs, acc.to(y_ptr.dtype.element_ty), mask=offs < sample_size)


def _mixed_sum_bwd(outs, grads, w_ptr, g_ptr, partial_ptr, sample_size, stride_wn, stride_wk, num_blocks,
                   K: tl.constexpr, GRAD_OUTS: tl.constexpr, GRAD_W: tl.constexpr, BLOCK: tl.constexpr):
    n = tl.program_id(1)
    block = tl.program_id(0)
    offs = block * BLOCK + tl.arange(0, BLOCK)
    inside = offs < sample_size
    base = n.to(tl.int64) * sample_size
    g = tl.load(g_ptr + base + offs, mask=inside, other=0.0).to(tl.float32)
    for k in tl.static_range(K):
        w = tl.load(w_ptr + n * stride_wn + k * stride_wk).to(tl.float32)
        if (GRAD_OUTS >> k) & 1:
            tl.store(grads[k] + base + offs, (w * g).to(grads[k].dtype.element_ty), mask=inside)
        if GRAD_W:
            o = tl.load(outs[k] + base + offs, mask=inside, other=0.0).to(tl.float32)
            tl.store(partial_ptr + (n * num_blocks + block) * K + k, tl.sum(g * o, axis=0))


def _aligned(outputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Candidates in one batch-dense layout (the first one's when it has one), copying only misfits."""
    ref = outputs[0] if batch_dense(outputs[0]) else outputs[0].contiguous()
    return [like_layout(o, ref.stride()) for o in outputs]


class MixedSum(torch.autograd.Function):
    """Autograd wrapper: forward and backward are one Triton launch each. The candidates are saved for backward
    only when the weights need a gradient (frozen weights: nothing of activation size is kept)."""

    @staticmethod
    def forward(ctx, weights: torch.Tensor, *outputs: torch.Tensor) -> torch.Tensor:
        outs = _aligned(outputs)
        first = outs[0]
        n = first.shape[0]
        sample_size = first.numel() // n
        stride_wn, stride_wk = (0, weights.stride(0)) if weights.dim() == 1 else weights.stride()
        y = torch.empty_like(first, dtype=result_dtype(first.dtype, weights))
        jit(_mixed_sum_fwd)[(cdiv(sample_size, BLOCK), n)](
            tuple(outs), weights, y, sample_size, stride_wn, stride_wk, K=len(outs), BLOCK=BLOCK)
        ctx.save_for_backward(weights, *(outs if ctx.needs_input_grad[0] else ()))
        ctx.strides = (stride_wn, stride_wk)
        ctx.layout = (first.shape, first.stride(), first.dtype, len(outs))
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        weights, *outs = ctx.saved_tensors
        shape, strides, dtype, k = ctx.layout
        n, sample_size = shape[0], grad_y.numel() // shape[0]
        need_w, need_outs = ctx.needs_input_grad[0], ctx.needs_input_grad[1:]
        g = like_layout(grad_y, strides)
        grads = [torch.empty_strided(shape, strides, dtype=dtype, device=g.device) if need else None
                 for need in need_outs]
        outs = outs or [g] * k  # not read: no weight gradient
        num_blocks = cdiv(sample_size, BLOCK)
        partial = torch.empty((n, num_blocks, len(outs)) if need_w else (1,), device=g.device, dtype=torch.float32)
        grad_mask = sum(1 << k for k, need in enumerate(need_outs) if need)
        jit(_mixed_sum_bwd)[(num_blocks, n)](
            tuple(outs), tuple(gr if gr is not None else g for gr in grads), weights, g, partial, sample_size,
            *ctx.strides, num_blocks, K=len(outs), GRAD_OUTS=grad_mask, GRAD_W=need_w, BLOCK=BLOCK)
        grad_w = None
        if need_w:
            per_sample = partial.sum(1)
            grad_w = (per_sample if weights.dim() == 2 else per_sample.sum(0)).to(weights.dtype)
        return (grad_w, *grads)


def mixed_sum_triton(outputs: Sequence[torch.Tensor], weights: torch.Tensor) -> torch.Tensor:
    """Triton `mixed_sum`; callers check `contract.mixed_sum_supported` first (the dispatcher does)."""
    require_triton(outputs[0].device)
    return MixedSum.apply(weights, *outputs)
