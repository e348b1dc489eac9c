"""Mixed depthwise convolution with the CUDA C++ kernels of `cuda_source` (built on first use by load_inline).

Forward and input gradient run in CUDA with shared-memory halo tiles; the tap gradient (a reduction, which
Triton expresses well) reuses the Triton kernel. Inputs are made NCHW-contiguous (a copy for channels-last).
"""

from __future__ import annotations

import functools
import shutil
from collections.abc import Sequence

import torch

from hwnas.errors import RuntimeUnavailable
from hwnas.kernels.contract import result_dtype
from hwnas.kernels.cuda_source import CPP_SOURCE, CUDA_SOURCE
from hwnas.kernels.depthwise_taps import TapSet, combined_taps, output_size, tap_set
from hwnas.kernels.runtime import triton_unusable_reason

EXTENSION_NAME = "hwnas_depthwise_taps"


def cuda_unusable_reason(device: torch.device) -> str | None:
    """Why the CUDA C++ kernels cannot run on `device`, or None when they can (building may still take a minute)."""
    if device.type != "cuda":
        return f"the CUDA C++ kernels need CUDA tensors (got {device.type})"
    if torch.version.cuda is None:
        return "this PyTorch has no CUDA support"
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None and shutil.which("nvcc") is None:
        return "no CUDA toolkit (nvcc) to build the extension; set CUDA_HOME"
    return triton_unusable_reason(device)  # the tap gradient is the Triton kernel


@functools.cache
def extension():
    """The compiled extension (cached by torch under ~/.cache/torch_extensions; the first build takes ~1 min)."""
    from torch.utils.cpp_extension import load_inline

    return load_inline(name=EXTENSION_NAME, cpp_sources=[CPP_SOURCE], cuda_sources=[CUDA_SOURCE],
                       functions=["taps_apply"], extra_cuda_cflags=["-O3"], verbose=False)


class DepthwiseTapsCuda(torch.autograd.Function):
    """Like `mixed_depthwise_triton.DepthwiseTaps`, with the CUDA C++ forward and input gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, taps_w: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, stride: int,
                radius: int, out_dtype: torch.dtype) -> torch.Tensor:
        x = x.contiguous()
        h, w = x.shape[-2:]
        oh, ow = output_size(h, w, stride)
        with torch.cuda.device(x.device):  # the launch goes to the current device
            y = extension().taps_apply(True, x, taps_w, dy, dx, h, w, oh, ow, radius, stride,
                                       torch.cuda.current_stream(x.device).cuda_stream)
        ctx.save_for_backward(x, taps_w, dy, dx)
        ctx.geometry = (stride, radius)
        return y.to(out_dtype)

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor):
        from hwnas.kernels.mixed_depthwise_triton import tap_gradient

        x, taps_w, dy, dx = ctx.saved_tensors
        stride, radius = ctx.geometry
        g = grad_y.to(x.dtype).contiguous()
        h, w = x.shape[-2:]
        oh, ow = g.shape[-2:]
        grad_x = grad_taps = None
        if ctx.needs_input_grad[0]:
            with torch.cuda.device(x.device):
                grad_x = extension().taps_apply(False, g, taps_w, dy, dx, h, w, oh, ow, radius, stride,
                                                torch.cuda.current_stream(x.device).cuda_stream)
        if ctx.needs_input_grad[1]:
            grad_taps = tap_gradient(x, g, taps_w, dy, dx, stride)
        return grad_x, grad_taps, None, None, None, None, None


def mixed_depthwise_cuda(x: torch.Tensor, weight: torch.Tensor | Sequence[torch.Tensor], arch_weights: torch.Tensor,
                         kernel_sizes: Sequence[int], dilations: Sequence[int] | None = None,
                         stride: int = 1) -> torch.Tensor:
    """CUDA C++ `mixed_depthwise`; callers check `contract.mixed_depthwise_supported` first."""
    reason = cuda_unusable_reason(x.device)
    if reason:
        raise RuntimeUnavailable(reason)
    taps: TapSet = tap_set(tuple(kernel_sizes), tuple(dilations or [1] * len(kernel_sizes)))
    compact = combined_taps(weight, arch_weights, kernel_sizes, taps)
    taps_w = compact.reshape(-1, *compact.shape[-2:]).transpose(1, 2).contiguous()
    dy, dx = taps.offsets_tensor(x.device)
    return DepthwiseTapsCuda.apply(x, taps_w, dy, dx, stride, taps.radius, result_dtype(x.dtype, arch_weights))
