"""Triton mixed_sum against the reference: values and gradients, dtypes, layouts, masked mode (CPU: interpreter)."""

from __future__ import annotations

import pytest
import torch

from hwnas.kernels import reference
from hwnas.kernels.parity import parity
from hwnas.kernels.runtime import interpreting, triton_installed

pytestmark = pytest.mark.skipif(not triton_installed(), reason="triton is not installed")



@pytest.fixture
def device() -> str:
    """Where the Triton kernels run in this process: the interpreter on the CPU, or compiled on a GPU."""
    return "cpu" if interpreting() else "cuda"


def _triton(outputs, weights):
    from hwnas.kernels.mixed_sum_triton import mixed_sum_triton

    return mixed_sum_triton(outputs, weights)


def _candidates(shape, k, device, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator).to(device, dtype).requires_grad_() for _ in range(k)]


def _assert_parity(args):
    results = parity(_triton, reference.mixed_sum, args)
    assert all(r.ok for r in results), results
    return results


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_matches_reference(device, dtype, per_sample):
    outputs = _candidates((3, 5, 17, 23), 4, device, dtype)  # 1955 per sample: crosses 1024-element blocks
    weights = torch.softmax(torch.randn((3, 4) if per_sample else (4,)), -1).to(device).requires_grad_()
    results = _assert_parity((outputs, weights))
    assert len(results) == 1 + 1 + 4  # output, weights, every candidate


@pytest.mark.parametrize("layout", ["channels_last", "sliced", "mixed"])
def test_non_contiguous_inputs(device, layout):
    base = _candidates((2, 6, 5, 8), 3, device)
    if layout == "channels_last":
        outputs = [o.detach().to(memory_format=torch.channels_last).requires_grad_() for o in base]
    elif layout == "sliced":
        outputs = [o.detach()[:, ::2, :, 1:7].requires_grad_() for o in base]
    else:
        a, b, c = (o.detach() for o in base)
        outputs = [a.requires_grad_(), b.to(memory_format=torch.channels_last).requires_grad_(),
                   c.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_()]
    assert not all(o.is_contiguous() for o in outputs)
    weights = torch.randn(2, 3, device=device, requires_grad=True)
    _assert_parity((outputs, weights))


def test_odd_shapes(device):
    _assert_parity((_candidates((1, 1, 1, 1), 2, device), torch.randn(1, 2, device=device, requires_grad=True)))
    _assert_parity((_candidates((5, 3), 3, device), torch.randn(3, device=device, requires_grad=True)))
    _assert_parity((_candidates((2, 3, 5, 7, 2), 2, device), torch.randn(2, device=device, requires_grad=True)))


def test_partial_gradients(device):
    outputs = _candidates((2, 3, 4, 5), 3, device)
    outputs[1] = outputs[1].detach()
    weights = torch.randn(3, device=device)  # no grad: the backward reads no candidate
    results = _assert_parity((outputs, weights))
    assert len(results) == 1 + 2


def test_zero_weights_skip_their_inputs(device):
    """Masked mode: a candidate with weight 0 is never read, so even NaN there leaves y finite (the reference's
    0 * NaN would not be)."""
    live = torch.randn(2, 3, 4, 5, device=device)
    dead = torch.full_like(live, float("nan"))
    y = _triton([dead, live, dead], torch.tensor([0.0, 0.7, 0.0], device=device))
    torch.testing.assert_close(y, 0.7 * live)
    gate = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]], device=device)  # per-sample one-hot / all off
    y = _triton([dead, live, dead], gate)
    torch.testing.assert_close(y[0], live[0])
    assert torch.equal(y[1], torch.zeros_like(y[1]))


def test_masked_backward_without_weight_grad(device):
    live = torch.randn(2, 3, 4, 5, device=device, requires_grad=True)
    dead = torch.full((2, 3, 4, 5), float("nan"), device=device, requires_grad=True)
    y = _triton([dead, live], torch.tensor([0.0, 2.0], device=device))
    grad_dead, grad_live = torch.autograd.grad(y.sum(), [dead, live])
    assert torch.equal(grad_dead, torch.zeros_like(grad_dead))
    torch.testing.assert_close(grad_live, torch.full_like(grad_live, 2.0))


def test_dtype_follows_reference(device):
    outputs = _candidates((2, 3, 4, 4), 2, device, torch.float16)
    for weights in (torch.rand(2, device=device), torch.rand(2, 2, device=device)):
        assert _triton(outputs, weights).dtype == reference.mixed_sum(outputs, weights).dtype


def _saved_numel(run) -> int:
    """Elements autograd saves for backward while `run()` builds its graph."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        run()
    return sum(saved)


def test_frozen_weights_keep_no_activation_for_backward(device):
    """With weights that need no gradient (e.g. the weight step of an alternating search), nothing of activation
    size is saved; with trainable weights the candidates are (dL/dw needs them)."""
    outputs = _candidates((2, 3, 4, 5), 3, device)
    frozen, trained = torch.rand(3, device=device), torch.rand(3, device=device).requires_grad_()
    assert _saved_numel(lambda: _triton(outputs, frozen)) == 3
    assert _saved_numel(lambda: _triton(outputs, trained)) == 3 + 3 * 2 * 3 * 4 * 5
