"""Shared fixtures: a small real LUT measured once per session with ONNX Runtime on this CPU."""

from __future__ import annotations

import os

import pytest
import torch

from hwnas.device import get_device
from hwnas.lut.build import build_lut
from hwnas.profilers.base import MeasureSettings
from hwnas.spaces.catalog import get_space

torch.set_num_threads(1)

# Triton fixes interpreted vs compiled mode when first imported, and other tests (export, inductor) may import it
# before the kernel tests do: without a GPU, choose the interpreter before any test module loads.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

QUICK = MeasureSettings(warmup=2, warmup_s=0.0, min_repeats=5, max_repeats=40, target_ci=0.05, budget_s=0.2)
TINY_RESOLUTION = 32


@pytest.fixture(scope="session")
def tiny_space():
    """The FBNet space at 32 px with 10 classes: every block measures in milliseconds."""
    return get_space("fbnet", TINY_RESOLUTION, 10)


@pytest.fixture(scope="session")
def tiny_lut(tmp_path_factory, tiny_space):
    """A real ONNX Runtime LUT of the tiny space (quick settings), built once."""
    path = tmp_path_factory.mktemp("lut") / "cpu.csv"
    report, table = build_lut(get_device("cpu"), tiny_space.specs(), path, QUICK, steadiness=None)
    assert report.measured == len(tiny_space.specs())
    return path


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """The tiny chain space's YAML and a real LUT of the tiny chain and dense spaces (tests/search_helpers.py), built
    once per session for every search test (a module may define its own `folder` instead)."""
    from tests.search_helpers import measured_model, tiny_chain, tiny_dense

    path = tmp_path_factory.getbasetemp() / "search"
    path.mkdir(exist_ok=True)
    measured_model(path / "cpu.csv", tiny_chain(path), tiny_dense())
    return path
