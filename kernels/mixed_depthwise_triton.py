"""Mixed depthwise convolution in Triton (same contract as `reference.mixed_depthwise`).

The K candidates (3/5/7, dilated or not, superkernel or independent weights) become one depthwise convolution
over the union of their taps (`depthwise_taps`), so each kernel reads the input tile once: the shifted loads of
neighbouring taps hit L1/L2, and nothing of size K x activation is ever written or saved for backward (the
reference saves K candidate outputs). Three kernels: forward, input gradient (the transposed convolution, as a
gather so no atomics), and per-sample tap gradient (a split reduction over positions, partials summed after).
Any input strides work (NCHW, NHWC, sliced); weights per sample (Gumbel) or shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton.language as tl

from hwnas.kernels.contract import result_dtype
from hwnas.kernels.depthwise_taps import TapSet, combined_taps, output_size, tap_set
from hwnas.kernels.runtime import cdiv, jit, next_power_of_2, require_triton, target_programs


def _dw_fwd(x_ptr, w_ptr, dy_ptr, dx_ptr, y_ptr, C, H, W, OH, OW, T, swn,
            sxn, sxc, sxh, sxw, syn, syc, syh, syw,
            STRIDE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n = tl.program_id(2)
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    oh = p // OW
    ow = p % OW
    p_ok = p < OH * OW
    c_ok = c < C
    x_base = x_ptr + n.to(tl.int64) * sxn + c[None, :] * sxc
    w_base = w_ptr + n * swn + c
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for t in range(T):
        ih = oh * STRIDE + tl.load(dy_ptr + t)
        iw = ow * STRIDE + tl.load(dx_ptr + t)
        ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
        xv = tl.load(x_base + ih[:, None] * sxh + iw[:, None] * sxw, mask=ok[:, None] & c_ok[None, :], other=0.0)
        wv = tl.load(w_base + t * C, mask=c_ok, other=0.0)
        acc += xv.to(tl.float32) * wv[None, :]
    y_at = y_ptr + n.to(tl.int64) * syn + c[None, :] * syc + oh[:, None] * syh + ow[:, None] * syw
    tl.store(y_at, acc.to(y_ptr.dtype.element_ty), mask=p_ok[:, None] & c_ok[None, :])


def _dw_bwd_input(g_ptr, w_ptr, dy_ptr, dx_ptr, gx_ptr, C, H, W, OH, OW, T, swn,
                  sgn, sgc, sgh, sgw, sxn, sxc, sxh, sxw,
                  STRIDE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n = tl.program_id(2)
    q = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    ih = q // W
    iw = q % W
    q_ok = q < H * W
    c_ok = c < C
    g_base = g_ptr + n.to(tl.int64) * sgn + c[None, :] * sgc
    w_base = w_ptr + n * swn + c
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for t in range(T):
        th = ih - tl.load(dy_ptr + t)  # output row times STRIDE that read this input row through tap t
        tw = iw - tl.load(dx_ptr + t)
        ok = q_ok & (th >= 0) & (tw >= 0)
        if STRIDE > 1:
            ok = ok & (th % STRIDE == 0) & (tw % STRIDE == 0)
        oh = th // STRIDE
        ow = tw // STRIDE
        ok = ok & (oh < OH) & (ow < OW)
        gv = tl.load(g_base + oh[:, None] * sgh + ow[:, None] * sgw, mask=ok[:, None] & c_ok[None, :], other=0.0)
        wv = tl.load(w_base + t * C, mask=c_ok, other=0.0)
        acc += gv.to(tl.float32) * wv[None, :]
    gx_at = gx_ptr + n.to(tl.int64) * sxn + c[None, :] * sxc + ih[:, None] * sxh + iw[:, None] * sxw
    tl.store(gx_at, acc.to(gx_ptr.dtype.element_ty), mask=q_ok[:, None] & c_ok[None, :])


def _dw_bwd_taps(x_ptr, g_ptr, dy_ptr, dx_ptr, partial_ptr, N, C, H, W, OH, OW, T,
                 sxn, sxc, sxh, sxw, sgn, sgc, sgh, sgw,
                 STRIDE: tl.constexpr, SPLIT: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    n = tl.program_id(1)
    split = tl.program_id(2)
    c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_ok = c < C
    x_base = x_ptr + n.to(tl.int64) * sxn + c[None, :] * sxc
    g_base = g_ptr + n.to(tl.int64) * sgn + c[None, :] * sgc
    out_base = partial_ptr + ((split * N + n) * T).to(tl.int64) * C + c
    for t in range(T):
        dy = tl.load(dy_ptr + t)
        dx = tl.load(dx_ptr + t)
        acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for start in range(split * BLOCK_P, OH * OW, SPLIT * BLOCK_P):  # the g tile is re-read per tap from cache
            p = start + tl.arange(0, BLOCK_P)
            oh = p // OW
            ow = p % OW
            p_ok = p < OH * OW
            ih = oh * STRIDE + dy
            iw = ow * STRIDE + dx
            ok = p_ok & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            gv = tl.load(g_base + oh[:, None] * sgh + ow[:, None] * sgw, mask=p_ok[:, None] & c_ok[None, :],
                         other=0.0)
            xv = tl.load(x_base + ih[:, None] * sxh + iw[:, None] * sxw, mask=ok[:, None] & c_ok[None, :],
                         other=0.0)
            acc += gv.to(tl.float32) * xv.to(tl.float32)
        tl.store(out_base + t * C, tl.sum(acc, axis=0), mask=c_ok)


def _blocks(t: torch.Tensor, channels: int, positions: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C): channels along the contiguous axis for NHWC, positions for NCHW."""
    if t.stride(1) == 1 and channels > 1:
        block_c = min(64, next_power_of_2(channels))
        return max(16, 1024 // block_c), block_c
    block_p = min(256, max(16, next_power_of_2(positions)))
    return block_p, max(1, 1024 // block_p) if positions < 256 else 4


class DepthwiseTaps(torch.autograd.Function):
    """Depthwise convolution of x with per-tap weights (NW, T, C), NW = 1 (shared) or N (per sample)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, taps_w: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, stride: int,
                out_dtype: torch.dtype) -> torch.Tensor:
        n, c, h, w = x.shape
        oh, ow = output_size(h, w, stride)
        memory_format = torch.channels_last if (x.stride(1) == 1 and c > 1) else torch.contiguous_format
        y = torch.empty((n, c, oh, ow), device=x.device, dtype=out_dtype, memory_format=memory_format)
        block_p, block_c = _blocks(x, c, oh * ow)
        swn = 0 if taps_w.shape[0] == 1 else taps_w.stride(0)
        jit(_dw_fwd)[(cdiv(oh * ow, block_p), cdiv(c, block_c), n)](
            x, taps_w, dy, dx, y, c, h, w, oh, ow, dy.numel(), swn, *x.stride(), *y.stride(),
            STRIDE=stride, BLOCK_P=block_p, BLOCK_C=block_c)
        ctx.save_for_backward(x, taps_w, dy, dx)
        ctx.stride = stride
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, taps_w, dy, dx = ctx.saved_tensors
        grad_x = input_gradient(grad_y, taps_w, dy, dx, x, ctx.stride) if ctx.needs_input_grad[0] else None
        grad_taps = tap_gradient(x, grad_y, taps_w, dy, dx, ctx.stride) if ctx.needs_input_grad[1] else None
        return grad_x, grad_taps, None, None, None, None


def input_gradient(grad_y: torch.Tensor, taps_w: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, x: torch.Tensor,
                   stride: int) -> torch.Tensor:
    """dL/dx: the transposed depthwise convolution, one gather per input position (no atomics)."""
    n, c, h, w = x.shape
    oh, ow = grad_y.shape[-2:]
    grad_x = torch.empty_like(x)
    block_p, block_c = _blocks(grad_x, c, h * w)
    swn = 0 if taps_w.shape[0] == 1 else taps_w.stride(0)
    jit(_dw_bwd_input)[(cdiv(h * w, block_p), cdiv(c, block_c), n)](
        grad_y, taps_w, dy, dx, grad_x, c, h, w, oh, ow, dy.numel(), swn, *grad_y.stride(), *grad_x.stride(),
        STRIDE=stride, BLOCK_P=block_p, BLOCK_C=block_c)
    return grad_x


def tap_gradient(x: torch.Tensor, grad_y: torch.Tensor, taps_w: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                 stride: int) -> torch.Tensor:
    """dL/dtaps, shaped like `taps_w` (NW, T, C): per sample for per-sample weights, summed over N for shared."""
    n, c, h, w = x.shape
    oh, ow = grad_y.shape[-2:]
    t = dy.numel()
    block_p, block_c = _blocks(x, c, oh * ow)
    programs = n * cdiv(c, block_c)
    split = max(1, min(cdiv(oh * ow, block_p), cdiv(target_programs(x.device), programs)))
    partial = torch.empty((split, n, t, c), device=x.device, dtype=torch.float32)
    jit(_dw_bwd_taps)[(cdiv(c, block_c), n, split)](
        x, grad_y, dy, dx, partial, n, c, h, w, oh, ow, t, *x.stride(), *grad_y.stride(),
        STRIDE=stride, SPLIT=split, BLOCK_P=block_p, BLOCK_C=block_c)
    per_sample = partial.sum(0)
    grad_taps = per_sample if taps_w.shape[0] == n else per_sample.sum(0, keepdim=True)
    return grad_taps.reshape(taps_w.shape).to(taps_w.dtype)


def mixed_depthwise_triton(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor],
                           arch_weights: torch.Tensor, kernel_sizes: Sequence[int],
                           dilations: Sequence[int] | None = None, stride: int = 1) -> torch.Tensor:
    """Triton `mixed_depthwise`: combine the candidates' taps (tiny, autograd), then one depthwise pass."""
    require_triton(x.device)
    dilations = tuple(dilations or [1] * len(kernel_sizes))
    taps = tap_set(tuple(kernel_sizes), dilations)
    return depthwise_on_taps(x, combined_taps(weight, arch_weights, kernel_sizes, taps), taps, stride,
                             result_dtype(x.dtype, arch_weights))


def depthwise_on_taps(x: torch.Tensor, compact: torch.Tensor, taps: TapSet, stride: int,
                      out_dtype: torch.dtype) -> torch.Tensor:
    """Run the Triton depthwise kernels on combined taps (C, T) or (N, C, T)."""
    taps_w = compact.reshape(-1, *compact.shape[-2:]).transpose(1, 2).contiguous()  # (NW, T, C)
    dy, dx = taps.offsets_tensor(x.device)
    return DepthwiseTaps.apply(x, taps_w, dy, dx, stride, out_dtype)
