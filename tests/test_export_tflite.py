"""TFLite export with litert-torch and the AI Edge Quantizer, checked by the LiteRT interpreter: the published
reference networks in fp32 and fp16 (SE and h-swish in int8 from calibration images).
Conversion costs seconds per network, so each network converts once (fp16 and int8 start from its fp32 file)."""

import numpy as np
import pytest
import torch

from hwnas.arch import Arch
from hwnas.errors import HwnasError
from hwnas.export import get_exporter
from hwnas.export.common import parity
from hwnas.export.fold import fold_batchnorm
from hwnas.export.source import ExportSource, build_model
from hwnas.spaces.published import get_published

pytestmark = pytest.mark.slow  # converts whole networks with the real TFLite converter

pytest.importorskip("litert_torch", reason="TFLite export needs litert-torch (pip install 'hwnas[tflite]')")
torch.set_num_threads(1)
REFERENCE = ("mobilenetv2", "fbnet_c", "proxyless_mobile", "hardcorenas_a")
RESOLUTION = 64


def network(arch):
    model, _ = build_model(ExportSource(arch, "test", "string"), seed=0)
    return model, fold_batchnorm(model)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """name -> (model, folded, example, fp32 path, fp16 path), converted on first use."""
    exporter, folder, done = get_exporter("tflite"), tmp_path_factory.mktemp("tflite"), {}

    def convert(name, arch):
        if name not in done:
            model, folded = network(arch)
            example = torch.randn(3, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(2))
            fp32 = exporter.export(folded, example, folder / f"{name}.fp32")
            fp16 = exporter.export(folded, example, folder / f"{name}.fp16", precision="fp16", float_model=fp32)
            done[name] = (model, folded, example, fp32, fp16)
        return done[name]

    return convert


# A random searched architecture goes through TFLite (trained, with int8) in test_export_cli.
CASES = [pytest.param(name, get_published(name, RESOLUTION, 10), id=name) for name in REFERENCE]


@pytest.mark.parametrize("name,arch", CASES)
def test_fp32_matches_pytorch(converted, name, arch):
    exporter = get_exporter("tflite")
    model, _, example, fp32, _ = converted(name, arch)
    result = parity(exporter.check(fp32, model, example), model, example, "fp32")
    assert result.passed, f"{name}: fp32 relative error {result.relative_error:.2e} > 1e-4"
    facts = exporter.describe(fp32)
    assert facts["input_shape"] == [1, 3, RESOLUTION, RESOLUTION] and facts["input_dtype"] == "float32"
    assert facts["ops"].get("CONV_2D", 0) + facts["ops"].get("DEPTHWISE_CONV_2D", 0) > 0


@pytest.mark.parametrize("name,arch", CASES)
def test_fp16_halves_the_file_and_adds_nothing_but_the_rounding(converted, name, arch):
    """Against PyTorch with the same fp16 weights the conversion must be fp32-exact; against fp32 PyTorch the
    error is the rounding's, which a random network amplifies more than a trained one (see test_export_cli)."""
    exporter = get_exporter("tflite")
    model, folded, example, fp32, fp16 = converted(name, arch)
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    twin = exporter.rounded_reference(folded, "fp16")
    result = parity(exporter.check(fp16, model, example), model, example, "fp16",
                    (twin, exporter.check(fp16, twin, example)))
    assert result.conversion_passed, f"{name}: conversion error {result.conversion_error:.2e} > 1e-4"
    assert result.floor_error > 0  # the weights really are rounded
    assert result.relative_error == pytest.approx(result.floor_error, rel=0.05, abs=1e-4)


def test_int8_from_calibration_images(converted, tmp_path):
    exporter = get_exporter("tflite")
    model, folded, example, fp32, _ = converted("hardcorenas_a", get_published("hardcorenas_a", RESOLUTION, 10))
    calibration = torch.randn(16, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(5))
    int8 = exporter.export(folded, example, tmp_path / "m.int8", precision="int8", calibration=calibration,
                           float_model=fp32)
    facts = exporter.describe(int8)
    assert facts["input_dtype"] == "int8" and facts["output_dtype"] == "int8"
    assert int8.stat().st_size < 0.4 * fp32.stat().st_size
    outputs = exporter.run(int8, example)  # (de)quantised at the boundary: comparable with PyTorch
    assert outputs.shape == (3, 10) and np.isfinite(outputs).all()
    with pytest.raises(HwnasError, match="calibration"):
        exporter.export(folded, example, tmp_path / "x.int8", precision="int8", float_model=fp32)


def test_unknown_precision_is_refused(tmp_path):
    _, folded = network(get_published("mobilenetv2", 32, 10))
    with pytest.raises(HwnasError, match="tflite exports precision fp32, fp16, int8, not 'bf16'"):
        get_exporter("tflite").export(folded, torch.randn(1, 3, 32, 32), tmp_path / "m", precision="bf16")


def test_channels_last_input_for_camera_pipelines(tmp_path):
    exporter = get_exporter("tflite")
    model, folded = network(Arch.parse("32:hswish:cn_k3_s2_c16,ir_k3_e3_c16_se0.25,ir_k5_s2_e4_c24,fc_c10"))
    example = torch.randn(2, 3, 32, 32)
    calibration = torch.randn(8, 3, 32, 32)
    fp32 = exporter.export(folded, example, tmp_path / "m.fp32", channels_last=True)
    int8 = exporter.export(folded, example, tmp_path / "m.int8", precision="int8", calibration=calibration,
                           float_model=fp32)
    assert exporter.describe(fp32)["input_shape"] == [1, 32, 32, 3]
    assert exporter.describe(int8)["input_shape"] == [1, 32, 32, 3]
    assert parity(exporter.check(fp32, model, example), model, example, "fp32").passed  # fed NCHW, laid out NHWC
