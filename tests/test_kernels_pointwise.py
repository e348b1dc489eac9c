"""Masked pointwise: the Triton GEMM and the folded rewrite against the reference (CPU: interpreter)."""

from __future__ import annotations

import pytest
import torch

from hwnas.kernels import reference
from hwnas.kernels.folded import masked_pointwise_folded
from hwnas.kernels.parity import parity
from hwnas.kernels.runtime import interpreting, triton_installed

needs_triton = pytest.mark.skipif(not triton_installed(), reason="triton is not installed")


@pytest.fixture
def device() -> str:
    """Where the Triton kernels run in this process: the interpreter on the CPU, or compiled on a GPU."""
    return "cpu" if interpreting() else "cuda"


def _triton(*args):
    from hwnas.kernels.masked_pointwise_triton import masked_pointwise_triton

    return masked_pointwise_triton(*args)


def _case(device, n=3, cin=37, cout=19, hw=(5, 7), per_sample=False, dtype=torch.float32, layout="nchw",
          bias=True, weight_4d=False, seed=0):
    """(x, weight, mask, bias): odd channel counts, a mask with a zero tail (a smaller expansion ratio)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin * (2 if layout == "sliced" else 1), *hw, generator=g)
    x = x[:, ::2] if layout == "sliced" else x
    x = x.to(memory_format=torch.channels_last) if layout == "nhwc" else x
    weight = torch.randn(cout, cin, *((1, 1) if weight_4d else ()), generator=g)
    mask = torch.rand((n, cin) if per_sample else (cin,), generator=g)
    mask[..., cin * 2 // 3:] = 0
    b = torch.randn(cout, generator=g) if bias else None
    tensors = [t.to(device, dtype).requires_grad_() if t is not None else None for t in (x, weight, mask, b)]
    return tuple(tensors)


def _assert_parity(function, args):
    results = parity(function, reference.masked_pointwise, args)
    assert all(r.ok for r in results), results
    return results


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True], ids=["per_channel", "per_sample"])
def test_triton_matches_reference(device, dtype, per_sample):
    results = _assert_parity(_triton, _case(device, per_sample=per_sample, dtype=dtype))
    assert len(results) == 5  # output, x, weight, mask, bias


@needs_triton
@pytest.mark.parametrize("layout", ["nhwc", "sliced"])
def test_triton_non_contiguous(device, layout):
    _assert_parity(_triton, _case(device, layout=layout, per_sample=True, weight_4d=True, bias=False))


@needs_triton
def test_triton_odd_shapes(device):
    _assert_parity(_triton, _case(device, n=1, cin=1, cout=3, hw=(1, 1)))
    _assert_parity(_triton, _case(device, n=2, cin=70, cout=65, hw=(3, 23)))  # > one tile in every dimension


@needs_triton
def test_triton_without_mask_gradient(device):
    x, weight, mask, bias = _case(device, per_sample=True)
    results = _assert_parity(_triton, (x, weight, mask.detach(), None))
    assert len(results) == 3


@needs_triton
def test_masked_off_channel_blocks_are_not_read(device):
    """A block of input channels whose mask is zero costs no load: NaN there leaves y finite (the reference's
    x * 0 would not be), and y equals the reference on the zeroed input."""
    x, weight, mask, bias = (t.detach() for t in _case(device, cin=40, per_sample=True))
    mask = mask.clone()
    mask[:, 32:] = 0  # channels 32..39: one whole block of 32 input channels
    poisoned = x.clone()
    poisoned[:, 32:] = float("nan")
    y = _triton(poisoned, weight, mask, bias)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, reference.masked_pointwise(x, weight, mask, bias), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weight_4d", [False, True])
def test_folded_matches_reference(weight_4d):
    _assert_parity(masked_pointwise_folded, _case("cpu", weight_4d=weight_4d))
