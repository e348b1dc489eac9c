"""An operation a target cannot represent is refused in one line naming the block that uses it: a third-party
block type (registered like any other) whose op ONNX has and TFLite / Core ML lack, and one ONNX lacks too."""

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from hwnas.arch import Arch
from hwnas.blocks import BLOCK_TYPES, BlockType, register_block_type
from hwnas.cli import app
from hwnas.export import UnsupportedBlock, get_exporter

torch.set_num_threads(1)
runner = CliRunner()
ARCH = "32:relu:cn_k3_s2_c8,{kind}_c8,fc_c10"


class Bucketize(nn.Module):
    """A step activation: each value becomes the index of its bin (ONNX can express it, TFLite cannot)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("bounds", torch.tensor([-0.5, 0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(x, self.bounds).to(x.dtype)


class Erfcx(nn.Module):
    """The scaled complementary error function, which neither ONNX opset 17 nor TFLite has."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.erfcx(x)


@pytest.fixture
def odd_blocks():
    for name, module in (("bkt", Bucketize), ("erfcx", Erfcx)):
        register_block_type(BlockType(name, lambda spec, module=module: module(), doc="test-only block"))
    yield
    for name in ("bkt", "erfcx"):
        BLOCK_TYPES.pop(name)


def test_onnx_names_the_block_it_cannot_export(odd_blocks, tmp_path):
    model = Arch.parse(ARCH.format(kind="erfcx")).build().eval()
    with pytest.raises(UnsupportedBlock, match=r"ONNX opset 17 cannot represent block 1 \(Erfcx\): .*erfcx"):
        get_exporter("onnx").export(model, torch.randn(1, 3, 32, 32), tmp_path / "m")


def test_coreml_names_the_block_it_cannot_convert(odd_blocks, tmp_path):
    pytest.importorskip("coremltools")
    model = Arch.parse(ARCH.format(kind="bkt")).build().eval()
    with pytest.raises(UnsupportedBlock, match=r"Core ML \(iOS16\) cannot represent block 1 \(Bucketize\)"):
        get_exporter("coreml").export(model, torch.randn(1, 3, 32, 32), tmp_path / "m")


def test_cli_refusal_carries_the_block_key(odd_blocks, tmp_path):
    pytest.importorskip("litert_torch")
    result = runner.invoke(app, ["export", "--arch", ARCH.format(kind="bkt"), "--to", "onnx,tflite", "--out",
                                 str(tmp_path), "--json"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert "TFLite (litert-torch) cannot represent block 1 `bkt:s1:8x16x16>8`" in message
    assert "aten.bucketize" in message  # the converter's own reason
    assert "Traceback" not in result.output
    # The ONNX file was finished before the refusal, and export.json says so.
    report = json.loads((tmp_path / "export.json").read_text())
    assert [a["format"] for a in report["artifacts"]] == ["onnx"]
