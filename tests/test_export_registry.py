"""The exporter registry: import paths resolved on use (importing hwnas loads no converter), one face per module."""

import subprocess
import sys

import pytest

from hwnas.errors import ConfigError
from hwnas.export import EXPORTERS, exporter_module
from hwnas.export.pipeline import plan_jobs

HEAVY = ("coremltools", "tensorrt", "litert_torch", "ai_edge_litert", "ai_edge_quantizer", "onnxslim")


def test_importing_hwnas_and_its_cli_loads_no_converter():
    code = ("import sys, hwnas, hwnas.export, hwnas.export.pipeline, hwnas.cli; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("name", sorted(EXPORTERS))
def test_every_exporter_has_the_face(name):
    module = exporter_module(name)
    for attribute in ("export", "check", "run", "describe", "versions", "unavailable_reason"):
        assert callable(getattr(module, attribute)), attribute
    assert module.NAME == name and module.SUFFIX.startswith(".") and module.EXTRA
    assert module.DEFAULT_PRECISION in module.PRECISIONS


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown export format 'pdf' .known: onnx, tflite, coreml, tensorrt."):
        exporter_module("pdf")


def test_jobs_put_fp32_first_and_tensorrt_after_onnx():
    assert plan_jobs(("tensorrt", "tflite", "onnx"), ("int8", "fp16", "fp32")) == [
        ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8"), ("onnx", "fp32"),
        ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8")]
    assert plan_jobs(("coreml", "onnx"), None) == [("coreml", "fp16"), ("onnx", "fp32")]
    with pytest.raises(ConfigError, match="onnx exports fp32; --precision asks only for fp16"):
        plan_jobs(("onnx",), ("fp16",))
