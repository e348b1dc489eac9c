"""Mixed depthwise: the tap union, the folded rewrite and the Triton kernels against the reference."""

from __future__ import annotations

import pytest
import torch

from hwnas.kernels import reference
from hwnas.kernels.depthwise_taps import combined_taps, tap_set
from hwnas.kernels.dispatch import select
from hwnas.kernels.folded import mixed_depthwise_folded
from hwnas.kernels.parity import parity
from hwnas.kernels.runtime import interpreting, triton_installed

needs_triton = pytest.mark.skipif(not triton_installed(), reason="triton is not installed")


@pytest.fixture
def device() -> str:
    """Where the Triton kernels run in this process: the interpreter on the CPU, or compiled on a GPU."""
    return "cpu" if interpreting() else "cuda"


def _triton(*args):
    from hwnas.kernels.mixed_depthwise_triton import mixed_depthwise_triton

    return mixed_depthwise_triton(*args)


def _case(device, channels=3, shape=(2, 7, 9), sizes=(3, 5, 7), dilations=None, superkernel=True,
          per_sample=False, dtype=torch.float32, layout="nchw", seed=0):
    """(x, weight, arch_weights, kernel_sizes, dilations) with every tensor requiring grad."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = shape
    x = torch.randn(n, channels * (2 if layout == "sliced" else 1), h, w + (1 if layout == "sliced" else 0),
                    generator=g)
    if layout == "sliced":
        x = x[:, ::2, :, 1:]
    elif layout == "nhwc":
        x = x.to(memory_format=torch.channels_last)
    x = x.to(device, dtype).requires_grad_()
    if superkernel:
        weight = torch.randn(channels, 1, max(sizes), max(sizes), generator=g).to(device, dtype).requires_grad_()
    else:
        weight = [torch.randn(channels, 1, k, k, generator=g).to(device, dtype).requires_grad_() for k in sizes]
    logits = torch.randn((n, len(sizes)) if per_sample else (len(sizes),), generator=g)
    arch = torch.softmax(logits, -1).to(device).requires_grad_()
    return x, weight, arch, list(sizes), list(dilations) if dilations else None


def test_tap_union_of_3_5_7_is_the_7x7_square():
    taps = tap_set((3, 5, 7), (1, 1, 1))
    assert taps.radius == 3 and len(taps.offsets) == 49
    centre = [taps.offsets[i] for i in taps.positions[0]]
    assert centre == [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def test_tap_union_with_dilation():
    taps = tap_set((3, 5, 3, 5), (1, 1, 2, 2))  # DARTS sep 3/5 and dil 3/5 depthwise stages
    assert taps.radius == 4
    assert len(taps.offsets) == 25 + 25 - 9  # the dilated 5x5 shares the {-2, 0, 2}^2 taps with the 5x5
    assert [taps.offsets[i] for i in taps.positions[3]][:2] == [(-4, -4), (-4, -2)]


def test_combined_taps_sum_the_candidates():
    x, weight, arch, sizes, _ = _case("cpu", sizes=(3, 5), superkernel=False)
    taps = tap_set((3, 5), (1, 1))
    compact = combined_taps(weight, arch, sizes, taps)
    centre = taps.offsets.index((0, 0))
    expected = arch[0] * weight[0][:, 0, 1, 1] + arch[1] * weight[1][:, 0, 2, 2]
    torch.testing.assert_close(compact[:, centre], expected)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("superkernel", [True, False], ids=["superkernel", "independent"])
@pytest.mark.parametrize("per_sample", [False, True], ids=["shared", "per_sample"])
def test_folded_matches_reference(stride, superkernel, per_sample):
    x, weight, arch, sizes, dilations = _case("cpu", superkernel=superkernel, per_sample=per_sample)
    results = parity(mixed_depthwise_folded, reference.mixed_depthwise, (x, weight, arch, sizes, dilations, stride))
    assert all(r.ok for r in results), results


def test_folded_matches_reference_dilated():
    args = _case("cpu", sizes=(3, 5, 3, 5), dilations=(1, 1, 2, 2), superkernel=False, per_sample=True)
    results = parity(mixed_depthwise_folded, reference.mixed_depthwise, (*args, 2))
    assert all(r.ok for r in results), results


TRITON_CASES = {
    "superkernel-shared-s1": dict(),
    "superkernel-per_sample-s2-nhwc": dict(per_sample=True, layout="nhwc", stride=2),
    "darts-dilated-per_sample-sliced": dict(sizes=(3, 5, 3), dilations=(1, 1, 2), superkernel=False,
                                            per_sample=True, layout="sliced"),
    "independent-shared-s2-odd": dict(sizes=(3, 5), superkernel=False, shape=(1, 6, 5), channels=5, stride=2),
    "fp16-s2": dict(sizes=(3, 5), dtype=torch.float16, stride=2),
    "bf16-per_sample": dict(sizes=(3, 5), dtype=torch.bfloat16, per_sample=True),
}


@needs_triton
@pytest.mark.parametrize("case", list(TRITON_CASES))
def test_triton_matches_reference(device, case):
    options = dict(TRITON_CASES[case])
    stride = options.pop("stride", 1)
    args = (*_case(device, **options), stride)
    results = parity(_triton, reference.mixed_depthwise, args)
    assert len(results) == 1 + 2 + (1 if isinstance(args[1], torch.Tensor) else len(args[1]))
    assert all(r.ok for r in results), results


@needs_triton
def test_input_only_gradient(device):
    x, weight, arch, sizes, _ = _case(device, sizes=(3,))
    weight, arch = weight.detach(), arch.detach()
    results = parity(_triton, reference.mixed_depthwise, (x, weight, arch, sizes, None, 1))
    assert len(results) == 2 and all(r.ok for r in results), results


@needs_triton
def test_even_kernel_sizes_go_to_the_reference(device):
    x = torch.randn(1, 2, 6, 6, device=device)
    weights = [torch.randn(2, 1, 2, 2, device=device), torch.randn(2, 1, 4, 4, device=device)]
    args = (x, weights, torch.rand(2, device=device), (2, 4), None, 1)
    for mode in ("triton", "folded"):
        assert select("mixed_depthwise", args, mode=mode)[0] == "reference"
