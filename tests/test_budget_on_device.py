"""The budget holds on the device: one owner picks the table that serves a device, calibrations stay with the space
they were fitted on, and the derived network is confirmed (and re-derived) from measurements on the device."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from hwnas.budget.costs import space_range_ms
from hwnas.cli import app
from hwnas.device import get_device
from hwnas.errors import HwnasError
from hwnas.lut.calibrate import calibrate_from_timings
from hwnas.lut.device_table import open_device_model
from hwnas.lut.model import LatencyModel
from hwnas.lut.network_timing import NetworkTiming
from hwnas.lut.table import LatencyTable
from hwnas.profilers.base import Timing
from hwnas.search.confirm import BAND_FLOOR, confirm_on_device, not_met_message
from hwnas.search.runner import run_search
from hwnas.strategies import SearchProblem, make_strategy
from tests.search_helpers import RESOLUTION, one_line_error, tiny_chain, tiny_dense, tiny_search_config

runner = CliRunner()


def _copy_lut(folder, target):
    for suffix in (".csv", ".meta.json"):
        (target / f"cpu{suffix}").write_bytes((folder / f"cpu{suffix}").read_bytes())
    return target / "cpu.csv"


# -- one owner for a device's table --------------------------------------------------------------------------------
def test_the_owner_refuses_another_devices_table_unless_forced(folder):
    with pytest.raises(HwnasError, match="cpu.csv does not serve device 'gpu': it was measured on device 'cpu'"):
        open_device_model(get_device("gpu"), folder / "cpu.csv")
    assert open_device_model(get_device("gpu"), folder / "cpu.csv", force=True).table.meta["device"] == "cpu"
    assert open_device_model(get_device("cpu"), folder / "cpu.csv").table.meta["device"] == "cpu"


def test_search_refuses_another_devices_table(folder, tmp_path):
    with pytest.raises(HwnasError, match="does not serve device 'gpu'"):
        run_search(tiny_search_config(folder, "hardcore", device="gpu"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_lut_predict_refuses_another_devices_table(folder):
    message = one_line_error(runner.invoke(app, ["lut", "predict", f"{RESOLUTION}:relu:ir_k3_e1_c8,fc_c10",
                                                  "--device", "gpu", "--lut", str(folder / "cpu.csv")]))
    assert "does not serve device 'gpu'" in message


def test_train_and_export_refuse_another_devices_table(folder, tmp_path):
    out = tmp_path / "run"
    run_search(tiny_search_config(folder, "hardcore", epochs=1, warmup_epochs=0), out)
    config = (out / "config.yaml").read_text().replace("device: cpu", "device: gpu")
    (out / "config.yaml").write_text(config)
    arch = json.loads((out / "arch.json").read_text())
    (out / "arch.json").write_text(json.dumps({**arch, "device": "gpu"}))
    message = one_line_error(runner.invoke(app, ["train", str(out), "--epochs", "1"]))
    assert "does not serve device 'gpu'" in message
    exported = runner.invoke(app, ["export", str(out), "--to", "onnx", "--out", str(tmp_path / "x")])
    assert exported.exit_code == 0 and "Traceback" not in exported.output, exported.output
    refusal = [line for line in exported.output.splitlines() if "no prediction on gpu" in line]
    assert len(refusal) == 1 and "does not serve device 'gpu'" in " ".join(exported.output.split())
    report = json.loads((tmp_path / "x" / "export.json").read_text())
    assert "predicted_ms" not in report["latency"]["predicted"][0]


# -- calibrations stay with their space ----------------------------------------------------------------------------
def test_a_calibration_of_one_space_is_never_applied_to_another(folder, tmp_path):
    lut = _copy_lut(folder, tmp_path)
    chain = tiny_chain(folder)
    archs = [chain.sample(random.Random(seed)) for seed in range(3)]
    plain = [LatencyModel(LatencyTable.load(lut)).block_sum(a) for a in archs]
    calibrate_from_timings(LatencyTable.load(lut), chain.name, archs, [2 * s for s in plain])
    table = LatencyTable.load(lut)
    assert LatencyModel(table, space=chain.name).predict(archs[0]) == pytest.approx(2 * plain[0], rel=1e-6)
    assert LatencyModel(table, space="another").predict(archs[0]) == pytest.approx(plain[0])
    assert LatencyModel(table).predict(archs[0]) == pytest.approx(plain[0])
    assert list(table.meta["calibration"]) == [f"{chain.name}@{RESOLUTION}"]


def test_an_old_per_resolution_calibration_is_not_applied(folder, tmp_path):
    lut = _copy_lut(folder, tmp_path)
    LatencyTable.load(lut).update_meta(lambda meta: meta.update(calibration={str(RESOLUTION): {"scale": 3.0}}))
    assert LatencyModel(LatencyTable.load(lut), space=tiny_chain(folder).name).calibrations == {}


# -- confirmation --------------------------------------------------------------------------------------------------
def _scripted_device(model: LatencyModel, slowdown: float, spread: float = 0.01):
    """A device whose networks run `slowdown` x their prediction, measured with a ±`spread` confidence interval."""
    measured = []

    def measure(arch) -> NetworkTiming:
        ms = slowdown * model.predict(arch)
        measured.append(ms)
        return NetworkTiming(Timing(ms, ms * 0.98, ms * 1.02, ms, ms * 0.01, 100, spread), 1.0)

    return measure, measured


def _scripted_table(path, *spaces) -> LatencyModel:
    """A table whose block latencies follow the blocks' arithmetic (parameters x output pixels, as a device without
    per-call overhead would): the tiny spaces then span a range wide enough to repair a 20% miss in."""
    from hwnas.lut.steady import _cost

    table = LatencyTable.open(path, {"device": "cpu", "fingerprint": {"runtime": "onnxruntime"},
                                     "fingerprint_id": "scripted"})
    for spec in dict.fromkeys(s for space in spaces for s in space.specs()):
        ms = 1e-3 + _cost(spec) * 1e-7
        table.append(spec, Timing(ms, ms, ms, ms, 0.0, 10, 0.01))
    return LatencyModel(table)


@pytest.mark.parametrize("name", ["hardcore", "fbnet", "proxyless", "densenas"])
def test_confirmation_on_a_device_20pct_slower_than_its_table_ends_under_the_budget(folder, tmp_path, name):
    space = tiny_dense() if name == "densenas" else tiny_chain(folder)
    model = _scripted_table(tmp_path / "scripted.csv", space)
    low, high = space_range_ms(space, model)
    budget = low + 0.6 * (high - low)
    strategy = make_strategy(name, SearchProblem(space, model, budget, seed=1, budget_floor=0.9), {})
    derivation = strategy.derive()
    measure, measured = _scripted_device(model, 1.2)
    assert 1.2 * derivation.predicted_ms * 1.01 > budget  # the table's pick would miss the budget on this device
    kept, confirmation = confirm_on_device(strategy, derivation, budget, measure, (low, high), rounds=3)
    assert kept is not None and confirmation.measured.upper_ms <= budget
    assert kept.detail["confirmation"]["measured_ms"] == pytest.approx(1.2 * kept.predicted_ms)
    assert len(confirmation.rounds) >= 2 and strategy.problem.budget_ms == budget  # the problem is restored


def test_a_network_far_under_the_budget_is_filled_toward_the_band(folder, tmp_path):
    space = tiny_chain(folder)
    model = _scripted_table(tmp_path / "scripted.csv", space)
    low, high = space_range_ms(space, model)
    budget = low + 0.5 * (high - low)
    strategy = make_strategy("hardcore", SearchProblem(space, model, budget, seed=1, budget_floor=0.9), {})
    measure, measured = _scripted_device(model, 0.7)  # the device runs 30% faster than the table says
    kept, confirmation = confirm_on_device(strategy, strategy.derive(), budget, measure, (low, high), rounds=3)
    assert confirmation.rounds[0].measured.median_ms < BAND_FLOOR * budget
    assert confirmation.measured.median_ms > confirmation.rounds[0].measured.median_ms
    assert confirmation.measured.upper_ms <= budget


def test_a_budget_the_device_cannot_meet_is_reported_with_every_round(folder):
    model = LatencyModel(LatencyTable.load(folder / "cpu.csv"))
    space = tiny_chain(folder)
    low, high = space_range_ms(space, model)
    strategy = make_strategy("hardcore", SearchProblem(space, model, low * 1.05, seed=1), {})
    measure, _ = _scripted_device(model, 3.0)
    kept, confirmation = confirm_on_device(strategy, strategy.derive(), low * 1.05, measure, (low, high),
                                           rounds=2)
    assert kept is None and 2 <= len(confirmation.rounds) <= 3 and confirmation.to_dict()["within_budget"] is False
    assert confirmation.rounds[-1].derived_under_ms == pytest.approx(low, rel=1e-5)  # ended at the fastest network
    assert "no derived network ran within the budget" in not_met_message(confirmation, "cpu")


def test_a_search_confirms_on_this_cpu_and_records_the_measurement(folder, tmp_path):
    """End to end on the real runtime: the run's files carry predicted and measured latency and every round."""
    lut = _copy_lut(folder, tmp_path)
    out = tmp_path / "run"
    result = run_search(tiny_search_config(folder, "hardcore", budget="60%", epochs=1, warmup_epochs=0,
                                           lut=str(lut), confirm=True, confirm_rounds=2), out)
    summary = json.loads((out / "search.json").read_text())
    arch = json.loads((out / "arch.json").read_text())
    rounds = summary["confirmation"]["rounds"]
    assert 1 <= len(rounds) <= 3 and summary["measured_ms"] == arch["measured_ms"] > 0
    assert summary["confirmation"]["kept_round"] is not None or summary["measured_ms"] is None
    assert arch["predicted_ms"] == pytest.approx(result.derivation.predicted_ms)
    assert all(r["ci_upper_ms"] >= r["median_ms"] > 0 for r in rounds)


def test_a_device_far_from_linear_in_the_prediction_is_bracketed_into_the_band(folder, tmp_path):
    """Small networks run at 0.6x their prediction and large ones at 1.8x (per-block overheads the table counts in
    isolation, cache misses it does not see): a ratio step alone jumps past the band; the bracket does not."""
    space = tiny_chain(folder)
    model = _scripted_table(tmp_path / "scripted.csv", space)
    low, high = space_range_ms(space, model)

    def measure(arch) -> NetworkTiming:
        predicted = model.predict(arch)
        ms = predicted * (0.6 + 1.2 * (predicted - low) / (high - low))
        return NetworkTiming(Timing(ms, ms * 0.98, ms * 1.02, ms, ms * 0.01, 100, 0.01), 1.0)

    budget = low + 0.5 * (high - low)
    strategy = make_strategy("hardcore", SearchProblem(space, model, budget, seed=1, budget_floor=0.9), {})
    kept, confirmation = confirm_on_device(strategy, strategy.derive(), budget, measure, (low, high), rounds=4)
    assert kept is not None and confirmation.measured.upper_ms <= budget
    targets = [r.derived_under_ms for r in confirmation.rounds]
    assert len(set(targets)) == len(targets)  # never derived twice under the same budget
