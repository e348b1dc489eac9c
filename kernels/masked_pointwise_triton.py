"""Channel-masked pointwise convolution in Triton (same contract as `reference.masked_pointwise`).

y[n] = W · diag(m_n) · x[n] (+ b) is one GEMM at the largest width with the mask folded into the weight tile as
it is loaded, so x·m is never written, nor saved for backward. A block of input channels whose mask is all zero
is skipped (no loads, no MMA): a smaller expansion ratio costs less instead of extra. Backward: one kernel gives
dL/dx = m ⊙ Wᵀg and, in its epilogue, dL/dm = Σ_p x ⊙ Wᵀg; another gives dL/dW as a split GEMM over samples.
Masks are per channel (Cin,) or per sample (N, Cin) (FBNetV2 / HardCoRe-NAS Gumbel channel masks).
"""

from __future__ import annotations

import torch
import triton.language as tl

from hwnas.kernels.runtime import cdiv, jit, require_triton, target_programs, upcast_dot

BLOCK_O, BLOCK_I, BLOCK_P = 64, 32, 64


def _pw_fwd(x_ptr, w_ptr, m_ptr, b_ptr, y_ptr, CIN, COUT, P, smn,
            sxn, sxc, sxp, swo, swi, syn, syc, syp,
            HAS_BIAS: tl.constexpr, UPCAST: tl.constexpr,
            BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
    n = tl.program_id(1)
    tiles_p = tl.cdiv(P, BLOCK_P)
    o = (tl.program_id(0) // tiles_p) * BLOCK_O + tl.arange(0, BLOCK_O)
    p = (tl.program_id(0) % tiles_p) * BLOCK_P + tl.arange(0, BLOCK_P)
    o_ok = o < COUT
    p_ok = p < P
    x_base = x_ptr + n.to(tl.int64) * sxn
    acc = tl.zeros([BLOCK_O, BLOCK_P], dtype=tl.float32)
    for start in range(0, CIN, BLOCK_I):
        i = start + tl.arange(0, BLOCK_I)
        i_ok = i < CIN
        m = tl.load(m_ptr + n * smn + i, mask=i_ok, other=0.0).to(tl.float32)
        if tl.max(tl.abs(m), axis=0) > 0:  # channels masked off: no loads, no MMA
            wt = tl.load(w_ptr + o[:, None] * swo + i[None, :] * swi, mask=o_ok[:, None] & i_ok[None, :], other=0.0)
            xt = tl.load(x_base + i[:, None] * sxc + p[None, :] * sxp, mask=i_ok[:, None] & p_ok[None, :], other=0.0)
            wm = wt.to(tl.float32) * m[None, :]
            if UPCAST:
                acc += tl.dot(wm, xt.to(tl.float32))
            else:
                acc += tl.dot(wm.to(xt.dtype), xt)
    if HAS_BIAS:
        acc += tl.load(b_ptr + o, mask=o_ok, other=0.0).to(tl.float32)[:, None]
    y_at = y_ptr + n.to(tl.int64) * syn + o[:, None] * syc + p[None, :] * syp
    tl.store(y_at, acc.to(y_ptr.dtype.element_ty), mask=o_ok[:, None] & p_ok[None, :])


def _pw_bwd_input(g_ptr, w_ptr, m_ptr, x_ptr, gx_ptr, partial_ptr, CIN, COUT, P, smn,
                  sgn, sgc, sgp, swo, swi, sxn, sxc, sxp, sdn, sdc, sdp,
                  GRAD_X: tl.constexpr, GRAD_M: tl.constexpr, UPCAST: tl.constexpr,
                  BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
    n = tl.program_id(1)
    tiles_p = tl.cdiv(P, BLOCK_P)
    tile_p = tl.program_id(0) % tiles_p
    i = (tl.program_id(0) // tiles_p) * BLOCK_I + tl.arange(0, BLOCK_I)
    p = tile_p * BLOCK_P + tl.arange(0, BLOCK_P)
    i_ok = i < CIN
    p_ok = p < P
    m = tl.load(m_ptr + n * smn + i, mask=i_ok, other=0.0).to(tl.float32)
    acc = tl.zeros([BLOCK_I, BLOCK_P], dtype=tl.float32)  # (Wᵀ g)[i, p]
    if GRAD_M:
        floor = -1.0  # the mask gradient needs Wᵀg even where the mask is zero
    else:
        floor = 0.0
    if tl.max(tl.abs(m), axis=0) > floor:
        for start in range(0, COUT, BLOCK_O):
            o = start + tl.arange(0, BLOCK_O)
            o_ok = o < COUT
            wt = tl.load(w_ptr + i[:, None] * swi + o[None, :] * swo, mask=i_ok[:, None] & o_ok[None, :], other=0.0)
            gt = tl.load(g_ptr + n.to(tl.int64) * sgn + o[:, None] * sgc + p[None, :] * sgp,
                         mask=o_ok[:, None] & p_ok[None, :], other=0.0)
            if UPCAST:
                acc += tl.dot(wt.to(tl.float32), gt.to(tl.float32))
            else:
                acc += tl.dot(wt.to(gt.dtype), gt)
    tile_ok = i_ok[:, None] & p_ok[None, :]
    if GRAD_X:
        gx_at = gx_ptr + n.to(tl.int64) * sdn + i[:, None] * sdc + p[None, :] * sdp
        tl.store(gx_at, (acc * m[:, None]).to(gx_ptr.dtype.element_ty), mask=tile_ok)
    if GRAD_M:
        x_at = x_ptr + n.to(tl.int64) * sxn + i[:, None] * sxc + p[None, :] * sxp
        xt = tl.load(x_at, mask=tile_ok, other=0.0).to(tl.float32)
        tl.store(partial_ptr + (n * tiles_p + tile_p).to(tl.int64) * CIN + i, tl.sum(acc * xt, axis=1), mask=i_ok)


def _pw_bwd_weight(g_ptr, x_ptr, m_ptr, partial_ptr, N, CIN, COUT, P, smn,
                   sgn, sgc, sgp, sxn, sxc, sxp,
                   SPLIT: tl.constexpr, UPCAST: tl.constexpr,
                   BLOCK_O: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_P: tl.constexpr):
    split = tl.program_id(1)
    tiles_i = tl.cdiv(CIN, BLOCK_I)
    o = (tl.program_id(0) // tiles_i) * BLOCK_O + tl.arange(0, BLOCK_O)
    i = (tl.program_id(0) % tiles_i) * BLOCK_I + tl.arange(0, BLOCK_I)
    o_ok = o < COUT
    i_ok = i < CIN
    acc = tl.zeros([BLOCK_O, BLOCK_I], dtype=tl.float32)
    for n in range(split, N, SPLIT):
        n64 = n + tl.zeros([], dtype=tl.int64)  # 64-bit sample offsets (the loop index is a plain int when interpreted)
        m = tl.load(m_ptr + n * smn + i, mask=i_ok, other=0.0).to(tl.float32)
        if tl.max(tl.abs(m), axis=0) > 0:
            sample = tl.zeros([BLOCK_O, BLOCK_I], dtype=tl.float32)  # Σ_p g[o, p] x[i, p] of sample n
            for start in range(0, P, BLOCK_P):
                p = start + tl.arange(0, BLOCK_P)
                p_ok = p < P
                gt = tl.load(g_ptr + n64 * sgn + o[:, None] * sgc + p[None, :] * sgp,
                             mask=o_ok[:, None] & p_ok[None, :], other=0.0)
                xt = tl.load(x_ptr + n64 * sxn + p[:, None] * sxp + i[None, :] * sxc,
                             mask=p_ok[:, None] & i_ok[None, :], other=0.0)
                if UPCAST:
                    sample += tl.dot(gt.to(tl.float32), xt.to(tl.float32))
                else:
                    sample += tl.dot(gt.to(xt.dtype), xt)
            acc += sample * m[None, :]
    out_at = partial_ptr + split.to(tl.int64) * COUT * CIN + o[:, None] * CIN + i[None, :]
    tl.store(out_at, acc, mask=o_ok[:, None] & i_ok[None, :])


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """NHWC for channels-last inputs, NCHW otherwise: both flatten H, W into one position axis without a copy."""
    nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return torch.channels_last if nhwc else torch.contiguous_format


class MaskedPointwise(torch.autograd.Function):
    """y = conv1x1(x ⊙ m, W) + b with three Triton launches in all (forward, input+mask grads, weight grad)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor | None):
        n, cin, h, w = x.shape
        cout = weight.shape[0]
        w2 = weight.reshape(cout, cin)
        m2 = mask.reshape(-1, cin)
        smn = m2.stride(0) if mask.dim() == 2 else 0
        xf = x.flatten(2)  # a view for NCHW / NHWC, a copy for other strides
        y = torch.empty((n, cout, h, w), device=x.device, dtype=weight.dtype, memory_format=_memory_format(x))
        yf = y.flatten(2)
        grid = (cdiv(cout, BLOCK_O) * cdiv(h * w, BLOCK_P), n)
        jit(_pw_fwd)[grid](
            xf, w2, m2, bias if bias is not None else y, yf, cin, cout, h * w, smn,
            *xf.stride(), *w2.stride(), *yf.stride(), HAS_BIAS=bias is not None, UPCAST=upcast_dot(x.dtype),
            BLOCK_O=BLOCK_O, BLOCK_I=BLOCK_I, BLOCK_P=BLOCK_P)
        ctx.save_for_backward(x, weight, mask)
        ctx.smn = smn
        return y

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        x, weight, mask = ctx.saved_tensors
        need_x, need_w, need_m, need_b = ctx.needs_input_grad
        n, cin, h, w = x.shape
        cout, p = weight.shape[0], h * w
        w2, m2, xf, gf = weight.reshape(cout, cin), mask.reshape(-1, cin), x.flatten(2), grad_y.flatten(2)
        upcast = upcast_dot(x.dtype)
        grad_x = grad_w = grad_m = grad_b = None
        if need_x or need_m:
            grad_x = torch.empty_like(x, memory_format=_memory_format(x)) if need_x else None
            gxf = grad_x.flatten(2) if need_x else xf
            tiles_p = cdiv(p, BLOCK_P)
            partial = torch.empty((n, tiles_p, cin) if need_m else (1,), device=x.device, dtype=torch.float32)
            jit(_pw_bwd_input)[(cdiv(cin, BLOCK_I) * tiles_p, n)](
                gf, w2, m2, xf, gxf, partial, cin, cout, p, ctx.smn, *gf.stride(), *w2.stride(), *xf.stride(),
                *gxf.stride(),
                GRAD_X=need_x, GRAD_M=need_m, UPCAST=upcast, BLOCK_O=BLOCK_O, BLOCK_I=BLOCK_I, BLOCK_P=BLOCK_P)
            if need_m:
                per_sample = partial.sum(1)
                grad_m = (per_sample if mask.dim() == 2 else per_sample.sum(0)).to(mask.dtype)
        if need_w:
            tiles = cdiv(cout, BLOCK_O) * cdiv(cin, BLOCK_I)
            split = max(1, min(n, cdiv(target_programs(x.device), tiles)))
            partial = torch.empty((split, cout, cin), device=x.device, dtype=torch.float32)
            jit(_pw_bwd_weight)[(tiles, split)](
                gf, xf, m2, partial, n, cin, cout, p, ctx.smn, *gf.stride(), *xf.stride(),
                SPLIT=split, UPCAST=upcast, BLOCK_O=BLOCK_O, BLOCK_I=BLOCK_I, BLOCK_P=BLOCK_P)
            grad_w = partial.sum(0).reshape(weight.shape).to(weight.dtype)
        if need_b:
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_m, grad_b


def masked_pointwise_triton(x: torch.Tensor, weight: torch.Tensor, mask: torch.Tensor,
                            bias: torch.Tensor | None = None) -> torch.Tensor:
    """Triton `masked_pointwise`; callers check `contract.masked_pointwise_supported` first (the dispatcher does)."""
    require_triton(x.device)
    return MaskedPointwise.apply(x, weight, mask, bias)
