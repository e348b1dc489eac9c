"""Core ML: coremltools conversion here (valid .mlpackage, expected input/output names and shapes, precisions),
option checks, predictions refused off macOS with a structured error through the agent, timing on a Mac."""

import platform
from dataclasses import replace

import pytest

from hwnas.device import Device, get_device
from hwnas.errors import ConfigError, HwnasError, RuntimeUnavailable
from hwnas.profilers import get_profiler
from hwnas.profilers.coreml import convert, converter_unavailable_reason, package_signature

from .conftest import QUICK

pytestmark = [pytest.mark.slow,  # converts blocks with the real Core ML converter
              pytest.mark.skipif(converter_unavailable_reason() is not None, reason="coremltools not installed")]
on_mac = pytest.mark.skipif(platform.system() != "Darwin", reason="Core ML predictions run only on macOS")


@pytest.fixture(scope="module")
def block(tiny_space):
    spec = next(s for s in tiny_space.specs() if s.key == "ir_k3_e3_nre:s1:16x16x16>16")
    return spec, spec.build().eval()


@pytest.fixture(scope="module")
def packages(block, tmp_path_factory):
    spec, model = block
    folder = tmp_path_factory.mktemp("coreml")
    paths = {}
    for precision in ("fp32", "fp16", "int8"):
        paths[precision] = folder / f"{precision}.mlpackage"
        convert(model, (1, *spec.input_shape), precision, paths[precision])
    return paths


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_package_is_a_valid_ml_program_with_named_io(packages, block, precision):
    import coremltools as ct

    spec, _ = block
    signature = package_signature(packages[precision])
    assert signature["ml_program"] and signature["spec_version"] >= 7
    assert signature["inputs"] == [("input", [1, *spec.input_shape])]
    assert signature["outputs"] == [("output", [1, *spec.out_shape])]
    assert ct.models.MLModel(str(packages[precision]), skip_model_load=True).get_spec().description.input


def test_precisions_change_the_weights(packages):
    def weight_bytes(path):
        return sum(f.stat().st_size for f in (path / "Data").rglob("*") if f.is_file())

    assert weight_bytes(packages["fp16"]) < weight_bytes(packages["fp32"])
    assert weight_bytes(packages["int8"]) < weight_bytes(packages["fp16"])


def test_classifier_output_shape(tiny_space, tmp_path):
    spec = tiny_space.specs()[-1]
    convert(spec.build(), (1, *spec.input_shape), "fp16", tmp_path / "fc.mlpackage")
    assert package_signature(tmp_path / "fc.mlpackage")["outputs"] == [("output", [1, spec.cout])]


@pytest.mark.parametrize("options, message", [
    ({"compute_units": "GPU"}, "coreml option 'compute_units' is 'GPU', expected one of CPU_ONLY, CPU_AND_GPU, "
                               "CPU_AND_NE, ALL"),
    ({"deployment_target": "iOS9"}, "coreml option 'deployment_target' is 'iOS9'"),
    ({"threads": 2}, "unknown coreml option 'threads'"),
])
def test_bad_options_are_one_line(options, message):
    with pytest.raises(ConfigError, match=f"device 'mac': {message}"):
        get_profiler(replace(get_device("mac"), options=options))


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the refusal off macOS")
def test_in_process_profiler_is_unavailable_off_macos():
    with pytest.raises(RuntimeUnavailable, match="Core ML predictions run only on macOS .*ssh://HOST"):
        get_profiler(Device("here", "coreml"))


@pytest.mark.skipif(platform.system() == "Darwin", reason="checks the refusal off macOS")
def test_agent_converts_here_and_refuses_to_predict_off_macos(block):
    spec, model = block
    device = Device("coreml-agent", "coreml", precision="fp16", transport="agent://local",
                    options={"compute_units": "CPU_ONLY"})
    with get_profiler(device) as profiler:
        artifact = profiler.compile(model, (1, *spec.input_shape))
        assert artifact.path.suffix == ".mlpackage"
        with pytest.raises(HwnasError, match=r"could not measure .*\[unsupported\] Core ML predictions run only on "
                                             "macOS"):
            profiler.time(artifact, QUICK)


@on_mac
@pytest.mark.parametrize("units", ["CPU_ONLY", "CPU_AND_GPU", "ALL"])
def test_predict_times_a_block_on_a_mac(block, units):
    spec, model = block
    device = Device("mac-here", "coreml", precision="fp16", options={"compute_units": units})
    with get_profiler(device) as profiler:
        timing, _ = profiler.measure(model, (1, *spec.input_shape), QUICK)
        assert profiler.fingerprint()["compute_units"] == units
    assert timing.median > 0 and timing.n >= QUICK.min_repeats
