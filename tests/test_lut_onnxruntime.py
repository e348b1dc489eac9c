"""Real ONNX Runtime measurements: profiling a space, resuming after a kill, predicting, validating."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.device import get_device
from hwnas.lut import LatencyModel, LatencyTable
from hwnas.lut.build import ReferenceBlock
from hwnas.lut.validate import sample_archs
from hwnas.profilers import get_profiler

from .conftest import QUICK

runner = CliRunner()


def test_onnxruntime_times_a_block(tiny_space):
    spec = tiny_space.positions[3].specs[3]
    with get_profiler(get_device("cpu")) as profiler:
        timing, artifact = profiler.measure(spec.build(), (1, *spec.input_shape), QUICK)
        assert artifact.path.suffix == ".onnx" and artifact.path.exists()
    assert timing.median > 0 and timing.n >= QUICK.min_repeats
    assert timing.p10 <= timing.median <= timing.p90


def test_profiled_table_covers_the_space_and_predicts(tiny_lut, tiny_space):
    table = LatencyTable.load(tiny_lut)
    assert table.missing(s.key for s in tiny_space.specs()) == []
    model = LatencyModel(table)
    low, high = model.space_latency(tiny_space).range_ms
    arch = sample_archs(tiny_space, 1, seed=5)[0][1]
    assert low <= model.predict(arch) <= high
    assert model.space_latency(tiny_space).of_choices(tiny_space.choices_of(arch)) == pytest.approx(model.predict(arch))


def test_profile_resumes_after_kill_and_loses_nothing(tmp_path):
    """Kill `hwnas profile` half-way; rows written stay byte for byte, the rerun measures only the rest."""
    lut = tmp_path / "cpu.csv"
    command = [sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu", "--space", "proxyless",
               "--resolution", "32", "--classes", "10", "--lut", str(lut), "--budget", "0.1", "--max-repeats", "30",
               "--reference-every", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and (not lut.exists() or lut.read_text().count("\n") < 12):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = lut.read_text()
    rows_before = before.count("\n") - 1
    assert rows_before >= 11
    result = runner.invoke(app, ["profile", "--device", "cpu", "--space", "proxyless", "--resolution", "32",
                                 "--classes", "10", "--lut", str(lut), "--budget", "0.1", "--max-repeats", "30",
                                 "--reference-every", "0", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    complete_rows = before[: before.rfind("\n") + 1]
    assert lut.read_text().startswith(complete_rows)
    assert summary["skipped"] == complete_rows.count("\n") - 1
    assert summary["measured"] + summary["skipped"] == summary["blocks"] == summary["rows"]


def test_cli_predict_lists_missing_blocks(tiny_lut):
    result = runner.invoke(app, ["lut", "predict", "mobilenetv2", "--resolution", "32", "--classes", "10",
                                 "--lut", str(tiny_lut)])
    assert result.exit_code == 1
    assert "not measured" in result.output and "hwnas profile" in result.output
    assert "Traceback" not in result.output


def test_cli_predict_json_sums_the_blocks(tiny_lut, tiny_space):
    arch = tiny_space.sample(__import__("random").Random(1))
    result = runner.invoke(app, ["lut", "predict", arch.to_string(), "--lut", str(tiny_lut), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert abs(sum(b["ms"] for b in data["blocks"]) - data["block_sum_ms"]) < 1e-9
    assert len(data["blocks"]) == len(arch.specs())


def test_cli_calibrate_then_validate_on_held_out_networks(tiny_lut, tmp_path):
    base = ["--space", "fbnet", "--resolution", "32", "--classes", "10", "--lut", str(tiny_lut)]
    calibrated = runner.invoke(app, ["lut", "calibrate", *base, "--networks", "4", "--steady-wait", "0", "--json"])
    assert calibrated.exit_code == 0, calibrated.output
    fit = json.loads(calibrated.stdout)
    assert fit["networks"] == 4 and len(fit["archs"]) == 4
    result = runner.invoke(app, ["lut", "validate", *base, "--samples", "4", "--no-published", "--out",
                                 str(tmp_path / "report"), "--steady-wait", "0", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["calibrated"]["n"] == 4
    assert not {n["arch"] for n in report["networks"]} & set(fit["archs"])
    assert all(0 < n["reference_ratio"] < 100 for n in report["networks"])
    for name in ("results.csv", "summary.json", "latency_pred_vs_meas.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0


def test_cli_show_reports_coverage(tiny_lut):
    result = runner.invoke(app, ["lut", "show", "--lut", str(tiny_lut), "--space", "fbnet", "--resolution", "32",
                                 "--classes", "10", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["space"]["missing"] == [] and data["space"]["range_ms"][0] < data["space"]["range_ms"][1]


def test_reference_block_reports_a_machine_slower_than_its_lut_row(tiny_lut, tiny_space):
    """A baseline far below what the block takes reads as a slow machine; settle gives up after its wait."""
    spec = tiny_space.specs()[0]
    with get_profiler(get_device("cpu")) as profiler:
        true_ms = LatencyTable.load(tiny_lut).latency(spec.key)
        steady = ReferenceBlock(profiler, spec, QUICK, 1, baseline_ms=true_ms)
        slow = ReferenceBlock(profiler, spec, QUICK, 1, baseline_ms=true_ms / 50)
        assert 0.2 < steady.ratio() < 5
        start = time.monotonic()
        assert slow.settle(tolerance=0.05, max_wait_s=0.3, pause_s=0.1) > 10
        assert time.monotonic() - start < 10
