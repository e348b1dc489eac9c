"""GPU-side checks: Triton kernels and the CUDA C++ source compile for sm_90 here; they run where a GPU is lent."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import hwnas.kernels as kernels
from hwnas.kernels import reference
from hwnas.kernels.cuda_source import CUDA_SOURCE
from hwnas.kernels.gpu_compile import kernel_specs, nvidia_backend_available
from hwnas.kernels.parity import parity

needs_backend = pytest.mark.skipif(not nvidia_backend_available(),
                                   reason="triton with its NVIDIA backend (ptxas) is not installed")
needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on PATH to compile the CUDA C++ source")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: GPU runs need a lent GPU")


@needs_backend
@pytest.mark.slow  # compiles every kernel for a GPU
def test_every_triton_kernel_compiles_for_sm90():
    """In its own process: Triton's library must be imported in compiled mode, and the tests run interpreted."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, "-m", "hwnas.kernels.gpu_compile", "fp32", "fp16", "bf16"],
                            capture_output=True, text=True, timeout=600, env=env)
    rows = json.loads(result.stdout)
    failed = [f"{r['kernel']} {r['dtype']}: {r['error']}" for r in rows if "error" in r]
    assert not failed and result.returncode == 0, failed or result.stderr[-2000:]
    assert len(rows) == 3 * len(kernel_specs("fp32")) and all(r["cubin_bytes"] > 0 for r in rows)


@needs_nvcc
@pytest.mark.slow  # compiles every kernel for a GPU
def test_cuda_source_compiles_for_sm90(tmp_path):
    source = tmp_path / "depthwise_taps.cu"
    source.write_text(CUDA_SOURCE)
    result = subprocess.run(["nvcc", "-arch=sm_90", "-cubin", "-o", str(tmp_path / "taps.cubin"), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "taps.cubin").stat().st_size > 0


@needs_gpu
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_extension_matches_reference(per_sample, stride, dtype):
    from hwnas.kernels.mixed_depthwise_cuda import cuda_unusable_reason, mixed_depthwise_cuda

    reason = cuda_unusable_reason(torch.device("cuda"))
    if reason:
        pytest.skip(reason)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 37, 29, generator=g).cuda().to(dtype).requires_grad_()
    superkernel = torch.randn(6, 1, 7, 7, generator=g).cuda().to(dtype).requires_grad_()
    arch = torch.softmax(torch.randn((3, 3) if per_sample else (3,), generator=g), -1).cuda().requires_grad_()
    results = parity(mixed_depthwise_cuda, reference.mixed_depthwise, (x, superkernel, arch, [3, 5, 7], None, stride))
    assert all(r.ok for r in results), results


@needs_gpu
def test_auto_dispatch_on_gpu_matches_reference(monkeypatch):
    monkeypatch.delenv("HWNAS_KERNELS", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    outputs = [torch.randn(8, 16, 14, 14, device="cuda", requires_grad=True) for _ in range(4)]
    weights = torch.rand(8, 4, device="cuda", requires_grad=True)
    results = parity(kernels.mixed_sum, reference.mixed_sum, (outputs, weights))
    assert all(r.ok for r in results), results
