"""TFLite/LiteRT: litert-torch conversion (NHWC, fp32/fp16/int8), interpreter timing, options, a LUT built here."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.device import Device, get_device
from hwnas.errors import ConfigError, HwnasError
from hwnas.lut.build import build_lut
from hwnas.profilers import get_profiler
from hwnas.profilers.tflite import TFLiteProfiler, convert, host_artifact
from hwnas.spaces.published import get_published

from .conftest import QUICK

pytestmark = [pytest.mark.slow,  # converts and times blocks with the real LiteRT converter and runtime
              pytest.mark.skipif(TFLiteProfiler.unavailable_reason() is not None,
                                 reason=f"TFLite not usable here: {TFLiteProfiler.unavailable_reason()}")]
runner = CliRunner()


def interpreter(path, xnnpack: bool = False):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    model = Interpreter(model_path=str(path), experimental_op_resolver_type=resolver)
    model.allocate_tensors()
    return model


def op_names(path) -> list[str]:
    return [op["op_name"] for op in interpreter(path)._get_ops_details()]


def tensor_types(path) -> set[str]:
    return {np.dtype(t["dtype"]).name for t in interpreter(path).get_tensor_details()}


@pytest.fixture(scope="module", autouse=True)
def private_conversion_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def block(tiny_space):
    """An inverted-residual block with a residual add (16x16x16, expansion 3): 1x1, depthwise, 1x1, add."""
    spec = next(s for s in tiny_space.specs() if s.key == "ir_k3_e3_nre:s1:16x16x16>16")
    torch.manual_seed(0)
    return spec, spec.build().eval()


@pytest.fixture(scope="module")
def converted(block, tmp_path_factory):
    spec, model = block
    folder = tmp_path_factory.mktemp("tflite")
    paths = {}
    for precision in ("fp32", "fp16", "int8"):
        paths[precision] = folder / f"{precision}.tflite"
        convert(model, (1, *spec.input_shape), precision, paths[precision], calibration_batches=4)
    return paths


def test_fp32_block_takes_nhwc_and_has_no_boundary_transposes(converted, block):
    spec, _ = block
    details = interpreter(converted["fp32"]).get_input_details()[0]
    assert tuple(details["shape"]) == (1, spec.h, spec.w, spec.cin)
    ops = op_names(converted["fp32"])
    assert "TRANSPOSE" not in ops and "DEPTHWISE_CONV_2D" in ops and ops.count("CONV_2D") == 2


def test_fp32_block_computes_what_the_pytorch_block_computes(converted, block):
    spec, model = block
    x = torch.randn(1, *spec.input_shape)
    lite = interpreter(converted["fp32"], xnnpack=True)
    lite.set_tensor(lite.get_input_details()[0]["index"], x.permute(0, 2, 3, 1).numpy())
    lite.invoke()
    got = lite.get_tensor(lite.get_output_details()[0]["index"])
    with torch.no_grad():
        expected = model(x).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_fp16_stores_half_precision_weights(converted):
    assert "float16" in tensor_types(converted["fp16"]) and "float16" not in tensor_types(converted["fp32"])
    assert "DEQUANTIZE" in op_names(converted["fp16"])


def test_int8_quantises_activations_and_weights_with_float_io(converted):
    model = interpreter(converted["int8"])
    convolutions = [op for op in model._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(convolutions) == 3
    assert all(np.dtype(t).name == "int8" for op in convolutions for t in op["operand_types"][:2])
    assert {"QUANTIZE", "DEQUANTIZE"} <= set(op_names(converted["int8"]))
    assert np.dtype(model.get_input_details()[0]["dtype"]) == np.float32


def test_a_block_the_converter_cannot_handle_is_refused_in_one_line(tmp_path):
    class DataDependent(torch.nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x - 1  # torch.export cannot trace a data-dependent branch

    with pytest.raises(HwnasError, match=r"could not convert this block to int8 TFLite .*try precision fp32") as err:
        convert(DataDependent(), (1, 4, 8, 8), "int8", tmp_path / "x.tflite")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_profiler_times_a_block(block, precision):
    spec, model = block
    device = replace(get_device("tflite-cpu"), precision=precision, options={"calibration_batches": 2})
    with get_profiler(device) as profiler:
        timing, artifact = profiler.measure(model, (1, *spec.input_shape), QUICK)
        fingerprint = profiler.fingerprint()
    assert artifact.path.suffix == ".tflite" and timing.median > 0
    assert QUICK.min_repeats <= timing.n <= QUICK.max_repeats and timing.p10 <= timing.median <= timing.p90
    assert fingerprint["precision"] == precision and fingerprint["runtime"] == "tflite"
    assert fingerprint["runtime_version"].startswith("ai-edge-litert") and fingerprint["layout"] == "nhwc"


def test_threads_and_xnnpack_settings_reach_the_fingerprint(block):
    spec, model = block
    device = Device("t", "tflite", threads=2, options={"xnnpack": False})
    with get_profiler(device) as profiler:
        assert profiler.fingerprint()["threads"] == 2 and profiler.fingerprint()["xnnpack"] is False
        assert profiler.measure(model, (1, *spec.input_shape), QUICK)[0].median > 0


@pytest.mark.parametrize("options, message", [
    ({"use_gpu": True}, "unknown tflite option 'use_gpu' \\(allowed: xnnpack, calibration_batches, benchmark_model, "
                        "conversion_cache\\)"),
    ({"xnnpack": "yes"}, "tflite option 'xnnpack' is 'yes', expected true or false"),
    ({"calibration_batches": 0}, "tflite option 'calibration_batches' is 0, expected an integer >= 1"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=f"device 'phone': {message}") as error:
        get_profiler(Device("phone", "tflite", options=options))
    assert "\n" not in str(error.value)


def test_cli_reports_a_bad_option_without_traceback(tmp_path):
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  phone:\n    runtime: tflite\n    options:\n      xnnpack: maybe\n")
    result = runner.invoke(app, ["profile", "--device", "phone", "--devices", str(devices), "--lut",
                                 str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "option 'xnnpack' is 'maybe'" in result.output
    assert "Traceback" not in result.output


def test_conversion_cache_reuses_a_block_across_builds_and_devices(tiny_space, tmp_path):
    spec, other = tiny_space.specs()[30], tiny_space.specs()[31]
    cached = Device("c", "tflite", options={"conversion_cache": str(tmp_path / "cache")})
    first = host_artifact(spec.build(), (1, *spec.input_shape), cached, tmp_path)
    again = host_artifact(spec.build(), (1, *spec.input_shape), replace(cached, name="raspi", threads=4), tmp_path)
    assert again.path == first.path and again.meta == first.meta
    assert host_artifact(other.build(), (1, *other.input_shape), cached, tmp_path).path != first.path
    fp16 = host_artifact(spec.build(), (1, *spec.input_shape), replace(cached, precision="fp16"), tmp_path)
    assert fp16.path != first.path and fp16.meta == {"fp16": "weights"}
    off = replace(cached, options={"conversion_cache": "off"})
    assert host_artifact(spec.build(), (1, *spec.input_shape), off, tmp_path).path.parent == tmp_path
    assert len(list((tmp_path / "cache").glob("*.tflite"))) == 3


def test_build_lut_appends_tflite_rows(tiny_space, tmp_path):
    specs = [tiny_space.specs()[i] for i in (0, 30, 110)]  # stem conv, a strided block, the classifier
    report, table = build_lut(get_device("tflite-cpu"), specs, tmp_path / "tflite.csv", QUICK, steadiness=None)
    assert report.measured == 3 and len(table) == 3 and report.compile_s > 0
    assert set(table.frame["runtime"]) == {"tflite"} and table.meta["fingerprint"]["converter"].startswith("litert")
    assert (table.frame["p50_ms"] > 0).all()


@pytest.mark.slow
def test_whole_network_converts_and_times():
    """`hwnas lut validate` times whole networks with the same profiler: a published network at 32 px."""
    arch = get_published("mobilenetv2", 32, 10)
    with get_profiler(get_device("tflite-cpu")) as profiler:
        timing, artifact = profiler.measure(arch.build(), (1, *arch.input_shape[1:]), QUICK)
        assert timing.median > 0 and "TRANSPOSE" not in op_names(artifact.path)
