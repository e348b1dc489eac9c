"""TensorRT export: refusals that run anywhere; plan building and parity on a GPU (skipped without one)."""

import importlib.util

import pytest
import torch

from hwnas.device import Device, get_device
from hwnas.errors import HwnasError, RuntimeUnavailable
from hwnas.export import exporter_module, get_exporter
from hwnas.export.common import parity
from hwnas.export.fold import fold_batchnorm
from hwnas.export.source import ExportSource, build_model
from hwnas.spaces.published import get_published

torch.set_num_threads(1)
tensorrt = exporter_module("tensorrt")
NO_GPU = tensorrt.unavailable_reason()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_tensorrt_names_the_extra():
    with pytest.raises(RuntimeUnavailable, match=r'pip install "hwnas\[tensorrt\]"'):
        get_exporter("tensorrt")


def test_a_remote_device_gets_the_command_to_build_there():
    with pytest.raises(HwnasError, match=r"jetson.*ssh://jetson.*trtexec --onnx=model.fp32.onnx "
                                         r"--saveEngine=model.fp16.plan --fp16"):
        tensorrt.check_device(get_device("jetson"))


def test_a_device_of_another_runtime_is_refused():
    with pytest.raises(HwnasError, match="device 'cpu' runs onnxruntime, not tensorrt"):
        tensorrt.check_device(get_device("cpu"))
    tensorrt.check_device(Device("local-gpu", "tensorrt", "int8"))  # local and TensorRT: accepted


@pytest.fixture(scope="module")
def network():
    arch = get_published("mobilenetv2", 64, 10)
    model, _ = build_model(ExportSource(arch, "mobilenetv2", "published"), seed=0)
    return model, fold_batchnorm(model), torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(3))


@pytest.mark.skipif(NO_GPU is not None, reason=f"needs TensorRT on an NVIDIA GPU: {NO_GPU}")
def test_fp32_plan_matches_pytorch(network, tmp_path):
    model, folded, example = network
    plan = tensorrt.export(folded, example, tmp_path / "m.fp32", precision="fp32", device=get_device("gpu"))
    result = parity(tensorrt.check(plan, model, example), model, example, "fp32")
    assert result.passed, f"relative error {result.relative_error:.2e}"
    assert tensorrt.describe(plan)["layers"] > 0


@pytest.mark.skipif(NO_GPU is not None, reason=f"needs TensorRT on an NVIDIA GPU: {NO_GPU}")
def test_fp16_and_int8_plans_build_and_run(network, tmp_path):
    model, folded, example = network
    fp16 = tensorrt.export(folded, example, tmp_path / "m.fp16", precision="fp16")
    int8 = tensorrt.export(folded, example, tmp_path / "m.int8", precision="int8", calibration=example)
    for plan in (fp16, int8):
        outputs = tensorrt.run(plan, example)
        assert outputs.shape == (4, 10) and torch.isfinite(torch.from_numpy(outputs)).all()
