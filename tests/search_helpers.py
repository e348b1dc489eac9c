"""Tiny spaces and a real (quickly measured) ONNX Runtime LUT for the search tests."""

from __future__ import annotations

from pathlib import Path

from hwnas.config import DataConfig, SearchConfig
from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.lut.model import LatencyModel
from hwnas.profilers.base import MeasureSettings
from hwnas.spaces.dense import DenseSpace, RoutingBlock
from hwnas.spaces.files import load_space_file

QUICK = MeasureSettings(warmup=2, warmup_s=0.0, min_repeats=5, max_repeats=30, target_ci=0.05, budget_s=0.1)
RESOLUTION = 16

TINY_CHAIN = """\
name: tiny
stem: [cn_k3_s2_c8]
stages:
  - {channels: 16, layers: 3, stride: 2, ops: [ir_k3_e1, ir_k3_e3, ir_k5_e3], min_layers: 1}
  - {channels: 24, layers: 2, stride: 2, ops: [ir_k3_e1, ir_k5_e3, skip], first_ops: [ir_k3_e1, ir_k5_e3]}
head: [cn_k1_c32]
act: relu
"""


def write_tiny_chain(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    if not path.exists():
        path.write_text(TINY_CHAIN)
    return path


def tiny_chain(folder: Path, num_classes: int = 10):
    return load_space_file(write_tiny_chain(folder)).with_resolution(RESOLUTION).with_classes(num_classes)


def tiny_dense(num_classes: int = 10) -> DenseSpace:
    blocks = (RoutingBlock(16, 2, 1, 1), RoutingBlock(16, 2, 1, 1), RoutingBlock(24, 3, 2, 1),
              RoutingBlock(24, 3, 2, 0))
    return DenseSpace(name="tinydense", stem=("cn_k3_s2_c8",), blocks=blocks, align_ops=("ir_k3_e1", "ir_k3_e3"),
                      stack_ops=("ir_k3_e1", "skip"), last="cn_k1_c32", last_stage=3, connections=2,
                      num_classes=num_classes, resolution=RESOLUTION, act="relu")


def measured_model(lut: Path, *spaces) -> LatencyModel:
    """Measure (once; later calls skip what is there) every block of `spaces` on this CPU with ONNX Runtime."""
    specs = [spec for space in spaces for spec in space.specs()]
    _, table = build_lut(get_device("cpu"), specs, lut, QUICK, steadiness=None)
    return LatencyModel(table)


def tiny_search_config(folder: Path, strategy: str, budget: str = "30%", **changes) -> SearchConfig:
    """A two-epoch search of the tiny chain space on 320 digits per split, with the LUT in `folder`; predictions
    only (no calibration fitted first, no confirmation on the device: tests of those ask for them)."""
    values = dict(space=str(write_tiny_chain(folder)), strategy=strategy, budget=budget, epochs=2, warmup_epochs=1,
                  threads=1, lut=str(folder / "cpu.csv"), data=DataConfig(resolution=RESOLUTION, limit=320),
                  calibrate_networks=0, confirm=False)
    values.update(changes)
    return SearchConfig(**values)


def one_line_error(result) -> str:
    """A CLI result that failed with exactly one `error:` line and no traceback; its output on one line."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1, result.output
    return " ".join(result.output.split())


def search_args(folder: Path, out: Path, *extra: str, epochs: str | None = "2") -> list[str]:
    """`hwnas search` of the tiny chain space on 320 digits with the LUT in `folder`, predictions only."""
    return ["search", "--space", str(write_tiny_chain(folder)), "--lut", str(folder / "cpu.csv"), "--out", str(out),
            "--resolution", str(RESOLUTION), "--limit", "320", "--threads", "1", "--calibrate-networks", "0",
            "--no-confirm", *(("--epochs", epochs) if epochs else ()), *extra]
