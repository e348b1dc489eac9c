"""Real ONNX Runtime measurements: profiling a space, resuming after a kill, predicting, validating."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from hwnas.blocks import BlockSpec
from hwnas.budget.costs import chain_cost
from hwnas.cli import app
from hwnas.device import get_device
from hwnas.lut import LatencyModel, LatencyTable
from hwnas.lut.build import measuring, profile_specs
from hwnas.lut.steady import PAIRED_MIN_MS, ReferenceBlock, Steadiness, reference_spec, stored_baseline
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
    cost = chain_cost(tiny_space, model)
    low, high = cost.range_ms
    arch = sample_archs(tiny_space, 1, seed=5)[0][1]
    assert low <= model.predict(arch) <= high
    assert cost.of_choices(tiny_space.choices_of(arch)) == pytest.approx(model.predict(arch))


@pytest.mark.slow  # times blocks with ONNX Runtime
def test_profile_resumes_after_kill_and_loses_nothing(tmp_path):
    """Kill `hwnas profile` half-way; rows written stay byte for byte, the rerun measures only the rest."""
    lut = tmp_path / "cpu.csv"
    command = [sys.executable, "-m", "hwnas.cli", "profile", "--device", "cpu", "--space", "proxyless",
               "--resolution", "32", "--classes", "10", "--lut", str(lut), "--budget", "0.1", "--max-repeats", "30",
               "--steady-wait", "0"]
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
                                 "--steady-wait", "0", "--json"])
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


@pytest.mark.slow  # times blocks with ONNX Runtime
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


def test_reference_block_waits_once_for_a_lasting_slowdown(tiny_lut, tiny_space, monkeypatch):
    """After a whole wait in vain, settle checks the machine once per call, and waits again once it was seen back."""
    spec = tiny_space.specs()[0]
    with get_profiler(get_device("cpu")) as profiler:
        slow = ReferenceBlock(profiler, spec, QUICK, 1, baseline_ms=LatencyTable.load(tiny_lut).latency(spec.key) / 50)
        checks = []
        floor = slow._floor
        monkeypatch.setattr(slow, "_floor", lambda: checks.append(1) or floor())

        def checks_in_settle(tolerance: float) -> int:
            before = len(checks)
            slow.settle(tolerance=tolerance, max_wait_s=0.3, pause_s=0.1)
            return len(checks) - before

        assert checks_in_settle(0.05) > 1
        assert checks_in_settle(0.05) == 1
        assert checks_in_settle(100.0) == 1  # seen within tolerance: back at its speed
        assert checks_in_settle(0.05) > 1


def test_reference_block_building_a_lut_tracks_its_fastest_time(tiny_space):
    """Without a LUT row the baseline is the reference's fastest timing, and a faster one later lowers it."""
    spec = tiny_space.specs()[0]
    with get_profiler(get_device("cpu")) as profiler:
        reference = ReferenceBlock(profiler, spec, QUICK, 1, probe_pause_s=0.01)
        assert reference.baseline > 0
        reference.baseline *= 50  # as if the probes had all run on a machine 50x slower
        assert reference.ratio() == 1.0 and reference.baseline < 1  # ms


@pytest.mark.slow  # times blocks with ONNX Runtime
def test_blocks_timed_off_the_reference_speed_are_reported_and_noted(tmp_path, tiny_space):
    """A tolerance no timing can meet and no time to wait: blocks are timed anyway, reported, and their rows say so
    (a timing that sets a new fastest reference reads exactly 1.0, so not every block need be)."""
    specs = tiny_space.specs()[:3]
    heard = []
    exacting, no_time = Steadiness(tolerance=1e-12, wait_s=0.0), replace(QUICK, budget_s=0.0)
    with measuring(get_device("cpu"), tmp_path / "cpu.csv", no_time) as (profiler, table):
        report = profile_specs(specs, profiler, table, no_time, exacting,
                               on_unsteady=lambda key, ratio: heard.append(key))
    assert report.measured == 3 and report.reference_ms > 0
    assert report.reference_key in {s.key for s in tiny_space.specs()}
    assert heard == [u.key for u in report.unsteady] and set(heard) <= {s.key for s in specs}
    assert heard, "a tolerance of 1e-12 is met by no timing"
    assert sum("reference_ratio=" in note for note in table.frame["note"]) == len(heard)


def test_paired_timing_counts_calls_at_the_reference_speed(tiny_space):
    """Against its own probed baseline the machine is steady; against a baseline 5x too fast no call counts and the
    ratio says how far off the machine ran."""
    target = tiny_space.specs()[5]
    with get_profiler(get_device("cpu")) as profiler:
        artifact = profiler.compile(target.build(), (1, *target.input_shape))
        probed = ReferenceBlock(profiler, BlockSpec.from_key("ir_k5_e6:s1:16x64x64>16"), QUICK, 1, probe_pause_s=0.01)
        too_fast = ReferenceBlock(profiler, BlockSpec.from_key("ir_k5_e6:s1:16x64x64>16"), QUICK, 1,
                                  baseline_ms=probed.baseline / 5)
        if too_fast.baseline < PAIRED_MIN_MS:
            pytest.skip(f"this CPU runs the reference in {probed.baseline:.3f} ms, too fast to pair calls with")
        medians = []
        for reference, steady in ((probed, True), (too_fast, False)):
            timing, ratio = reference.time(artifact, QUICK, Steadiness(tolerance=0.5, wait_s=1.0))
            reference.close()
            assert timing.n >= QUICK.min_repeats and timing.median > 0
            assert (abs(ratio - 1) <= 0.5) is steady and (steady or ratio > 3)
            assert reference.waited_in_vain is not steady, "the next timing waits only once the machine is seen back"
            medians.append(timing.median)
        assert 2.5 < medians[0] / medians[1] < 10, "calls are scaled to the baseline's speed"


def test_a_network_is_not_scaled_by_a_reference_it_slows(monkeypatch, tmp_path, tiny_space, tiny_lut):
    """A whole network evicts the reference block's data from cache, so the reference reads slow beside it for
    reasons of its own: the network's timing stays its own. With a baseline half the reference's speed, calls
    paired and scaled by it would read half as long as the network timed directly."""
    import shutil

    import hwnas.lut.network_timing as network_timing

    reference = BlockSpec.from_key("ir_k5_e6:s1:16x64x64>16")
    arch = sample_archs(tiny_space, 1, seed=3)[0][1]
    lut = tmp_path / "cpu.csv"
    shutil.copy(tiny_lut, lut)
    shutil.copy(tiny_lut.with_suffix(".meta.json"), lut.with_suffix(".meta.json"))
    with measuring(get_device("cpu"), lut, QUICK) as (profiler, table):
        probe = ReferenceBlock(profiler, reference, QUICK, 1, probe_pause_s=0.01)
        probe.close()
        if probe.baseline / 2 < PAIRED_MIN_MS:
            pytest.skip(f"this CPU runs the reference in {probe.baseline:.3f} ms, too fast to pair calls with")
        monkeypatch.setattr(network_timing, "stored_baseline", lambda table, key: probe.baseline / 2)
        timed = network_timing.measure_networks([("net", arch)], profiler, table, QUICK, steady_wait_s=0,
                                                reference=reference)[0]
        direct = profiler.time(profiler.compile(arch.build(), (1, *arch.input_shape[1:])), QUICK).median
    assert timed.reference_ratio > 1.5, "the reference read slow against the halved baseline"
    assert 0.75 < timed.median_ms / direct < 1.4, "the network was timed as it runs, not scaled by the reference"


@pytest.mark.slow  # times blocks with ONNX Runtime
def test_steady_blocks_leave_no_note(tmp_path, tiny_space):
    """A tolerance every timing meets: no block is reported, no row carries a ratio."""
    specs = tiny_space.specs()[:3]
    with measuring(get_device("cpu"), tmp_path / "cpu.csv", QUICK) as (profiler, table):
        report = profile_specs(specs, profiler, table, QUICK, Steadiness(tolerance=1e6, wait_s=0.0))
    assert report.unsteady == [] and report.measured == 3
    assert not any("reference_ratio=" in note for note in table.frame["note"])


@pytest.mark.slow  # times blocks with ONNX Runtime
def test_a_table_remembers_its_reference_for_later_timings(tmp_path, tiny_space):
    """The baseline a build timed its rows against is stored with the table under the reference's key, even when
    the build is interrupted; the resumed build times beside the same reference and starts from that baseline."""
    specs = tiny_space.specs()[:4]
    loose = Steadiness(tolerance=1e6, wait_s=0.0)

    done = []

    def interrupt_after_two(spec, measured):
        done.append(spec)
        if len(done) == 2:
            raise KeyboardInterrupt

    with measuring(get_device("cpu"), tmp_path / "cpu.csv", QUICK) as (profiler, table):
        with pytest.raises(KeyboardInterrupt):
            profile_specs(specs, profiler, table, QUICK, loose, on_block=interrupt_after_two)
    reference_key = reference_spec(specs).key
    stored = LatencyTable.load(tmp_path / "cpu.csv").meta["references"]
    assert list(stored) == [reference_key] and stored[reference_key] > 0
    with measuring(get_device("cpu"), tmp_path / "cpu.csv", QUICK) as (profiler, table):
        assert stored_baseline(table, reference_key) == stored[reference_key]
        resumed = profile_specs(specs, profiler, table, QUICK, loose)
    assert resumed.skipped == 2 and resumed.measured == 2 and resumed.reference_key == reference_key
    assert resumed.reference_ms <= stored[reference_key]
