"""Which implementation the public kernel functions run: HWNAS_KERNELS, devices, the shape-keyed chooser."""

from __future__ import annotations

import sys
import types

import pytest
import torch

import hwnas.kernels as kernels
import hwnas.kernels.dispatch as dispatch
from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.kernels import reference
from hwnas.kernels.dispatch import ShapeKeyedChooser, forward_backward, kernel_mode, select
from hwnas.kernels.runtime import interpreting, triton_installed

needs_triton = pytest.mark.skipif(not triton_installed(), reason="triton is not installed")


def _sum_args(n=2):
    outputs = [torch.randn(n, 3, 4, 4, requires_grad=True) for _ in range(3)]
    return outputs, torch.rand(3, requires_grad=True)


def test_unknown_mode_is_one_line(monkeypatch):
    monkeypatch.setenv("HWNAS_KERNELS", "fast")
    with pytest.raises(ConfigError, match="HWNAS_KERNELS='fast': expected one of auto, reference"):
        kernel_mode()


def test_auto_on_cpu_is_the_reference(monkeypatch):
    monkeypatch.delenv("HWNAS_KERNELS", raising=False)
    assert kernel_mode() == "auto"
    assert select("mixed_sum", _sum_args())[0] == "reference"


class _FakeTimings(ShapeKeyedChooser):
    """Stands in for the CUDA-event timing auto does on CUDA (there may be no GPU here): the fake kernel wins."""

    def choose(self, op, candidates, args):
        return "fake" if "fake" in candidates else "reference"


def _register_a_kernel_auto_picks(monkeypatch) -> list[int]:
    """Register a fake mixed_sum kernel that says it runs these CPU tensors, faster than the reference, and let auto
    take the path it takes on CUDA tensors (on CPU tensors auto keeps to the reference without looking at the
    implementations, so nothing could tell a forced reference from auto there): the call's device, which dispatch
    reads from `_tensors(args)[0].device`, reads as CUDA, and candidates are timed by a stand-in. The fake adds 1 to
    the reference's result, so its use cannot go unnoticed. Returns the list its calls append to."""
    calls: list[int] = []

    def fake_mixed_sum(outputs, weights):
        calls.append(len(outputs))
        return reference.mixed_sum(outputs, weights) + 1.0

    module = types.ModuleType("hwnas_test_fake_kernel")
    module.fake_mixed_sum = fake_mixed_sum
    monkeypatch.setitem(sys.modules, module.__name__, module)
    fake = dispatch.Implementation("fake", f"{module.__name__}:fake_mixed_sum",
                                   lambda outputs, weights: all(o.device.type == "cpu" for o in outputs))
    monkeypatch.setitem(dispatch.IMPLEMENTATIONS, "mixed_sum", (fake,))
    unusable = dispatch._unusable_reason
    monkeypatch.setattr(dispatch, "_unusable_reason", lambda name, device: None if name == "fake" else
                        unusable(name, device))
    as_if_on_cuda = types.SimpleNamespace(device=torch.device("cuda"))
    tensors = dispatch._tensors
    monkeypatch.setattr(dispatch, "_tensors", lambda args: [as_if_on_cuda for _ in tensors(args)])
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    monkeypatch.setattr(dispatch, "default_chooser", _FakeTimings)
    return calls


def test_forced_reference(monkeypatch):
    """HWNAS_KERNELS=reference selects the reference where auto picks another kernel, and the public function then
    is the reference's autograd graph and result, not a kernel's."""
    outputs, weights = _sum_args()
    expected = reference.mixed_sum(outputs, weights)
    if torch.cuda.is_available():  # a real CUDA call, where there is a GPU
        monkeypatch.setenv("HWNAS_KERNELS", "reference")
        cuda_args = ([o.cuda() for o in outputs], weights.cuda())
        assert select("mixed_sum", cuda_args)[0] == "reference"

    calls = _register_a_kernel_auto_picks(monkeypatch)
    monkeypatch.delenv("HWNAS_KERNELS", raising=False)
    assert select("mixed_sum", (outputs, weights))[0] == "fake"
    torch.testing.assert_close(kernels.mixed_sum(outputs, weights), expected + 1.0)
    assert calls == [3]

    monkeypatch.setenv("HWNAS_KERNELS", " Reference ")
    assert kernel_mode() == "reference"
    assert select("mixed_sum", (outputs, weights))[0] == "reference"
    y = kernels.mixed_sum(outputs, weights)
    assert calls == [3]  # the fake did not run
    assert "MixedSum" not in type(y.grad_fn).__name__
    torch.testing.assert_close(y, expected)


@needs_triton
def test_forced_triton_on_cpu_without_interpreter_is_one_line(monkeypatch):
    monkeypatch.setenv("HWNAS_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeUnavailable, match="need CUDA tensors.*TRITON_INTERPRET=1") as info:
        kernels.mixed_sum(*_sum_args())
    assert "\n" not in str(info.value)


@needs_triton
@pytest.mark.skipif(not interpreting(), reason="this process runs Triton compiled (a GPU, TRITON_INTERPRET unset)")
def test_forced_triton_on_cpu_runs_interpreted(monkeypatch):
    monkeypatch.setenv("HWNAS_KERNELS", "triton")
    outputs, weights = _sum_args()
    assert select("mixed_sum", (outputs, weights))[0] == "triton"
    y = kernels.mixed_sum(outputs, weights)
    assert "MixedSum" in type(y.grad_fn).__name__
    torch.testing.assert_close(y, reference.mixed_sum(outputs, weights))
    x = torch.randn(2, 4, 5, 5)
    assert kernels.masked_pointwise(x, torch.randn(3, 4), torch.rand(4)).shape == (2, 3, 5, 5)


def test_forced_cuda_on_cpu_is_one_line(monkeypatch):
    monkeypatch.setenv("HWNAS_KERNELS", "cuda")
    x = torch.randn(1, 2, 5, 5)
    with pytest.raises(RuntimeUnavailable, match="need CUDA tensors"):
        kernels.mixed_depthwise(x, torch.randn(2, 1, 3, 3), torch.rand(1), [3])


def test_forced_folded_falls_back_where_it_does_not_apply(monkeypatch):
    monkeypatch.setenv("HWNAS_KERNELS", "folded")
    x, weight = torch.randn(2, 4, 3, 3), torch.randn(5, 4)
    assert select("masked_pointwise", (x, weight, torch.rand(4), None))[0] == "folded"
    assert select("masked_pointwise", (x, weight, torch.rand(2, 4), None))[0] == "reference"  # per-sample mask
    assert select("mixed_sum", _sum_args())[0] == "reference"  # no folded mixed_sum
    superkernel, arch = torch.randn(4, 1, 5, 5), torch.rand(2)
    assert select("mixed_depthwise", (x, superkernel, arch, (3, 5), None, 1))[0] == "folded"
    torch.testing.assert_close(kernels.mixed_depthwise(x, superkernel, arch, [3, 5]),
                               reference.mixed_depthwise(x, superkernel, arch, [3, 5]))


def test_chooser_takes_the_fastest_and_remembers():
    costs = {"reference": 3.0, "triton": 1.0, "folded": 2.0}
    measured = []

    def measure(run):
        run()
        return costs[measured[-1]]

    def candidate(name):
        def function(outputs, weights):
            measured.append(name)
            return reference.mixed_sum(outputs, weights)

        return function

    chooser = ShapeKeyedChooser(measure=measure)
    candidates = {name: candidate(name) for name in costs}
    assert chooser.choose("mixed_sum", candidates, _sum_args()) == "triton"
    assert len(measured) == 3
    assert chooser.choose("mixed_sum", candidates, _sum_args()) == "triton"
    assert len(measured) == 3  # same shapes: no new timing
    costs["triton"] = 9.0
    assert chooser.choose("mixed_sum", candidates, _sum_args(n=5)) == "folded"  # new shape key: timed again
    assert len(measured) == 6


def test_chooser_skips_a_failing_candidate():
    def broken(outputs, weights):
        raise RuntimeError("no GPU compiler")

    chooser = ShapeKeyedChooser(measure=lambda run: (run(), 1.0)[1])
    with pytest.warns(UserWarning, match="triton failed"):
        name = chooser.choose("mixed_sum", {"reference": reference.mixed_sum, "triton": broken}, _sum_args())
    assert name == "reference"


def test_timing_run_leaves_the_callers_tensors_alone():
    outputs, weights = _sum_args()
    forward_backward(reference.mixed_sum, (outputs, weights))()
    assert weights.grad is None and all(o.grad is None for o in outputs)
