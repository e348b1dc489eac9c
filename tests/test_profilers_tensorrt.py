"""TensorRT: what runs without a GPU here (engine-cache keys and store, calibration data, option checks, the ONNX the
engine is built from, the unavailability message), and the real engine build and timing where a GPU is present."""

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from hwnas.device import Device, get_device
from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.lut.build import build_lut
from hwnas.profilers import get_profiler
from hwnas.profilers.target.trt_engine import EngineCache, calibration_batches, engine_cache_key
from hwnas.profilers.tensorrt import TensorRTProfiler, fingerprint, host_artifact

from .conftest import QUICK

TRT_REASON = TensorRTProfiler.unavailable_reason()
needs_gpu = pytest.mark.skipif(TRT_REASON is not None, reason=f"TensorRT not usable here: {TRT_REASON}")

KEY_FIELDS = dict(onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu="Orin (nvgpu)", compute_capability="8.7",
                  precision="fp16", workspace_mb=1024)


def test_engine_cache_key_changes_with_each_part_and_only_then():
    key = engine_cache_key(**KEY_FIELDS)
    assert key == engine_cache_key(**KEY_FIELDS) and len(key) == 32
    for field, other in [("onnx_sha256", "cd" * 32), ("tensorrt_version", "10.4.0"), ("gpu", "NVIDIA H100"),
                         ("compute_capability", "9.0"), ("precision", "int8"), ("workspace_mb", 2048)]:
        assert engine_cache_key(**{**KEY_FIELDS, field: other}) != key, field
    # the calibration data only matters to int8 engines
    assert engine_cache_key(**KEY_FIELDS, calibration="random:8") == key
    int8 = {**KEY_FIELDS, "precision": "int8"}
    assert engine_cache_key(**int8, calibration="random:8") != engine_cache_key(**int8, calibration="data:1234")


def test_engine_cache_stores_plans_atomically_and_rebuilds_damaged_entries(tmp_path):
    cache = EngineCache(tmp_path / "engines")
    key = engine_cache_key(**KEY_FIELDS)
    assert cache.get(key) is None
    plan = cache.put(key, b"serialized-engine-bytes", {"layers": 7})
    found = cache.get(key)
    assert found is not None and found[0] == plan and found[1] == {"layers": 7}
    assert plan.read_bytes() == b"serialized-engine-bytes" and not list(plan.parent.glob("*.part"))
    (plan.parent / f"{key}.json").write_text("{truncated")
    assert cache.get(key) is None


def test_int8_calibration_uses_user_data_when_its_shape_fits(tmp_path):
    batches, ident = calibration_batches((2, 3, 8, 8), {"calibration_batches": 3})
    assert ident == "random:3" and len(batches) == 3 and batches[0].shape == (2, 3, 8, 8)
    assert np.array_equal(batches[0], calibration_batches((2, 3, 8, 8), {"calibration_batches": 3})[0][0])
    data = np.random.default_rng(1).standard_normal((5, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "images.npy", data)
    batches, ident = calibration_batches((2, 3, 8, 8), {"calibration": str(tmp_path / "images.npy")})
    assert ident.startswith("data:") and len(batches) == 2 and np.array_equal(batches[1], data[2:4])
    other_shape, ident = calibration_batches((1, 16, 4, 4), {"calibration": str(tmp_path / "images.npy")})
    assert ident.startswith("random:") and other_shape[0].shape == (1, 16, 4, 4)  # deeper blocks: random


@pytest.mark.parametrize("options, message", [
    ({"workspace": 512}, "unknown tensorrt option 'workspace'"),
    ({"workspace_mb": 0}, "option 'workspace_mb' is 0, expected an integer >= 1"),
    ({"workspace_mb": True}, "option 'workspace_mb' is True"),
    ({"calibration": "images.png"}, "option 'calibration' is 'images.png', expected 'random' or the path of a .npy"),
])
def test_bad_options_are_one_line(options, message):
    device = Device("board", "tensorrt", precision="int8", transport="ssh://jetson", options=options)
    with pytest.raises(ConfigError, match=f"device 'board': .*{message}"):
        get_profiler(device)


def test_no_tensorrt_here_is_one_line_naming_the_extra():
    if TRT_REASON is None:
        pytest.skip("TensorRT is usable here")
    with pytest.raises(RuntimeUnavailable) as error:
        get_profiler(get_device("gpu"))
    assert 'pip install "hwnas[tensorrt]"' in str(error.value) and "\n" not in str(error.value)


def test_host_exports_a_static_onnx_for_the_engine(tmp_path, tiny_space):
    spec = tiny_space.specs()[30]
    artifact = host_artifact(spec.build(), (1, *spec.input_shape), get_device("jetson"), tmp_path)
    model = onnx.load(str(artifact.path))
    onnx.checker.check_model(model)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert artifact.format == "onnx" and dims == [1, *spec.input_shape]


def test_fingerprint_records_gpu_and_build_settings():
    target = {"cpu": "ARMv8", "machine": "aarch64", "system": "Linux", "runtime": "tensorrt",
              "runtime_version": "10.3.0", "threads": 1, "gpu": "Orin (nvgpu)", "compute_capability": "8.7"}
    device = replace(get_device("jetson"), options={"workspace_mb": 512})
    got = fingerprint(target, device)
    assert got["gpu"] == "Orin (nvgpu)" and got["compute_capability"] == "8.7" and got["workspace_mb"] == 512
    assert got["precision"] == "fp16" and got["runtime_version"] == "10.3.0"


@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_times_and_counts_layers(tiny_space, tmp_path, precision):
    spec = tiny_space.specs()[30]
    device = Device("gpu-test", "tensorrt", precision=precision, options={"engine_cache": str(tmp_path)})
    with get_profiler(device) as profiler:
        timing, artifact = profiler.measure(spec.build(), (1, *spec.input_shape), QUICK)
        again = profiler.compile(spec.build().eval(), (1, *spec.input_shape))
        assert profiler.fingerprint()["gpu"]
    assert artifact.format == "plan" and artifact.meta["layers"] >= 1 and timing.median > 0
    assert again.meta["layers"] == artifact.meta["layers"]
    assert len(list(tmp_path.glob("*.plan"))) >= 1


@needs_gpu
def test_lut_rows_note_the_engine_layer_count(tiny_space, tmp_path):
    device = Device("gpu-test", "tensorrt", precision="fp16", options={"engine_cache": str(tmp_path / "engines")})
    _, table = build_lut(device, tiny_space.specs()[:3], tmp_path / "gpu.csv", QUICK, steadiness=None)
    assert all(note.startswith("layers=") for note in table.frame["note"])
    assert torch.cuda.is_available()
