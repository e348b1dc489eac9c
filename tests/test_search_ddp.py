"""Data-parallel search: torchrun with 2 CPU processes (gloo); architecture parameters stay identical."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch.distributed as dist

from tests.search_helpers import RESOLUTION, measured_model, tiny_chain, tiny_dense, write_tiny_chain

pytestmark = pytest.mark.slow  # a two-process (DDP) search

@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="torch.distributed with the gloo backend is not available in this torch build")
def test_two_process_search(tmp_path_factory, tmp_path):
    folder = tmp_path_factory.getbasetemp() / "search"
    folder.mkdir(exist_ok=True)
    measured_model(folder / "cpu.csv", tiny_chain(folder), tiny_dense())
    launcher = tmp_path / "hwnas_main.py"
    launcher.write_text("from hwnas.cli import main\nmain()\n")
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(launcher),
               "search", "--space", str(write_tiny_chain(folder)), "--lut", str(folder / "cpu.csv"), "--out",
               str(out), "--resolution", str(RESOLUTION), "--limit", "320", "--epochs", "2", "--threads", "1",
               "--strategy", "proxyless", "--latency-budget", "50%", "--json", "--calibrate-networks", "0",
               "--no-confirm"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((out / "search.json").read_text())
    assert summary["world_size"] == 2 and summary["arch_params_identical_across_ranks"]
    assert summary["predicted_ms"] <= summary["budget_ms"]
    assert len((out / "history.csv").read_text().splitlines()) == 3
