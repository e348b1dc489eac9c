"""ONNX export: parity with PyTorch through ONNX Runtime for the published reference networks and random
architectures of every space, a graph with nothing but the derived network in it, opset and dynamic batch."""

import random

import onnx
import pytest
import torch
from torch import nn

from hwnas.export import get_exporter
from hwnas.export.fold import fold_batchnorm
from hwnas.export.source import ExportSource, build_model
from hwnas.spaces.catalog import SPACES, get_space
from hwnas.spaces.published import get_published

torch.set_num_threads(1)
REFERENCE = ("mobilenetv2", "fbnet_c", "proxyless_mobile", "hardcorenas_a")
RESOLUTION = 64


def network(arch):
    """The pipeline's untrained network (BN statistics settled, so every layer carries signal), and its folding."""
    model, trained = build_model(ExportSource(arch, "test", "string"), seed=0)
    assert not trained
    return model, fold_batchnorm(model)


CASES = [pytest.param(get_published(name, RESOLUTION, 10), id=name) for name in REFERENCE] + [
    pytest.param(get_space(space, RESOLUTION, 10).sample(random.Random(seed)), id=f"{space}-{seed}")
    for space in sorted(SPACES) for seed in (0, 1)]


@pytest.mark.parametrize("arch", CASES)
def test_onnx_reproduces_pytorch_with_only_the_derived_network(arch, tmp_path):
    exporter = get_exporter("onnx")
    model, folded = network(arch)
    example = torch.randn(3, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))
    path = exporter.export(folded, example, tmp_path / "model.fp32")
    assert path.name == "model.fp32.onnx"
    error = exporter.check(path, model, example)  # against the unfolded network: folding and export together
    with torch.no_grad():
        scale = model(example).abs().max().item()
    assert error <= 1e-4 * scale

    facts = exporter.describe(path)
    built = arch.build()
    count = (lambda kind: sum(isinstance(m, kind) for m in built.modules()))  # noqa: E731
    assert facts["nodes"].get("Conv", 0) == count(nn.Conv2d)
    assert facts["nodes"].get("Gemm", 0) + facts["nodes"].get("MatMul", 0) == count(nn.Linear)
    assert "BatchNormalization" not in facts["nodes"]
    assert facts["parameters"] == sum(p.numel() for p in folded.parameters())
    assert facts["input_shape"] == [1, 3, RESOLUTION, RESOLUTION] and facts["output_shape"] == [1, 10]


def test_dynamic_batch_and_opset(tmp_path):
    exporter = get_exporter("onnx")
    model, folded = network(get_published("mobilenetv2", 32, 10))
    example = torch.randn(5, 3, 32, 32)
    path = exporter.export(folded, example, tmp_path / "m", opset=13, dynamic_batch=True)
    facts = exporter.describe(path)
    assert facts["opset"] == 13
    assert isinstance(facts["input_shape"][0], str)  # a named, free batch dimension
    assert exporter.run(path, example).shape == (5, 10)  # one call with the whole batch
    with torch.no_grad():
        assert exporter.check(path, model, example) <= 1e-4 * model(example).abs().max().item()


def test_simplification_removes_what_tracing_leaves(tmp_path):
    exporter = get_exporter("onnx")
    _, folded = network(get_published("mobilenetv2", 32, 10))
    example = torch.randn(1, 3, 32, 32)
    raw = onnx.load(str(exporter.export(folded, example, tmp_path / "raw", simplify=False)))
    slim = onnx.load(str(exporter.export(folded, example, tmp_path / "slim")))
    kinds = {node.op_type for node in slim.graph.node}
    assert len(slim.graph.node) < len(raw.graph.node)
    assert not kinds & {"Identity", "Constant"}
