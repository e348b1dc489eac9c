"""A search killed (SIGKILL) after an epoch and resumed ends with the architecture of an uninterrupted search."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from tests.search_helpers import RESOLUTION, write_tiny_chain

runner = CliRunner()


def _args(folder, out) -> list[str]:
    return ["search", "--space", str(write_tiny_chain(folder)), "--lut", str(folder / "cpu.csv"), "--out", str(out),
            "--resolution", str(RESOLUTION), "--limit", "320", "--epochs", "3", "--warmup-epochs", "1",
            "--threads", "1", "--strategy", "hardcore", "--latency-budget", "40%", "--calibrate-networks", "0",
            "--no-confirm"]


def _rows(path) -> int:
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.slow  # a search killed and resumed
def test_resume_after_kill_gives_the_same_architecture(folder, tmp_path):
    whole = runner.invoke(app, _args(folder, tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output

    killed = tmp_path / "killed"
    command = [sys.executable, "-c", "from hwnas.cli import main; main()", *_args(folder, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while _rows(killed / "history.csv") < 1 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert _rows(killed / "history.csv") < 3 and not (killed / "arch.json").exists(), "killed too late"
    assert (killed / "supernet.pt").exists()

    resumed = runner.invoke(app, ["search", "--out", str(killed), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.output
    first, second = (json.loads((p / "arch.json").read_text()) for p in (tmp_path / "whole", killed))
    assert first["arch"] == second["arch"] and first["predicted_ms"] == second["predicted_ms"]

    def without_time(path):
        lines = [line.split(",") for line in (path / "history.csv").read_text().splitlines()]
        column = lines[0].index("seconds")
        return [[cell for i, cell in enumerate(line) if i != column] for line in lines]

    assert without_time(tmp_path / "whole") == without_time(killed)
