"""`hwnas search` and `hwnas train` through the CLI: JSON results, one-line refusals, no tracebacks."""

from __future__ import annotations

import json
import random

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.config import TrainConfig
from tests.search_helpers import one_line_error, search_args, tiny_chain, write_tiny_chain

runner = CliRunner()


def _args(folder, out, *extra: str) -> list[str]:
    return search_args(folder, out, *extra)


_error = one_line_error


def test_search_then_train_json(folder, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, _args(folder, out, "--strategy", "hardcore", "--latency-budget", "60%", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["predicted_ms"] <= summary["budget_ms"]
    low, high = summary["range_ms"]
    assert summary["budget_ms"] == pytest.approx(low + 0.6 * (high - low))
    argmax, budget = summary["argmax_ms"], summary["budget_ms"]
    assert summary["repaired"] == (argmax > budget or argmax < 0.9 * budget)
    assert "--batch-size is 0, expected a whole number >= 1" in _error(
        runner.invoke(app, ["train", str(out), "--batch-size", "0"]))
    trained = runner.invoke(app, ["train", str(out), "--epochs", "1", "--batch-size", "16", "--json"])
    assert trained.exit_code == 0, trained.output
    report = json.loads(trained.stdout)
    assert report["batch_size"] == 16 and report["lr"] == TrainConfig.lr  # the flag, and the run's train.lr
    assert report["zero_init_residual"] is TrainConfig.zero_init_residual
    assert 0.0 <= report["test_acc"] <= 1.0 and report["measured_ms"] > 0
    assert (out / "trained.pt").exists() and json.loads((out / "train.json").read_text()) == report
    again = runner.invoke(app, _args(folder, out, "--latency-budget", "60%"))
    assert "already holds a search" in _error(again)
    changed = runner.invoke(app, ["search", "--out", str(out), "--resume", "--strategy", "fbnet"])
    assert "only --epochs and --candidates may change" in _error(changed)


@pytest.mark.parametrize("budget,message", [
    ("1us", "outside this space's feasible range"),
    ("10s", "outside this space's feasible range"),
    ("20", "expected a number with a unit"),
    ("120%", "0%..100%"),
])
def test_budget_refusals(folder, tmp_path, budget, message):
    result = runner.invoke(app, _args(folder, tmp_path / "r", "--latency-budget", budget))
    text = _error(result)
    assert message in text
    if "feasible" in message:
        assert "ms.." in text  # the range is in the message


def test_other_refusals(folder, tmp_path):
    assert "--latency-budget is required" in _error(runner.invoke(app, _args(folder, tmp_path / "a")))
    wrong = runner.invoke(app, _args(folder, tmp_path / "b", "--latency-budget", "50%", "-p", "colour=1"))
    assert "unknown key 'colour'" in _error(wrong)
    dense = runner.invoke(app, _args(folder, tmp_path / "c", "--latency-budget", "50%", "--strategy", "densenas"))
    assert "searches dense spaces" in _error(dense)
    missing = runner.invoke(app, _args(folder, tmp_path / "d", "--latency-budget", "50%", "--resolution", "24",
                                       "--no-profile-missing"))
    assert "are not measured; rerun without --no-profile-missing" in _error(missing)
    remote = runner.invoke(app, [*_args(folder, tmp_path / "d", "--latency-budget", "50%", "--device", "raspi"),
                                 "--space", "fbnet", "--lut", str(tmp_path / "none.csv")])
    text = _error(remote)
    assert "(device 'raspi' is remote)" in text and "run `hwnas profile --device raspi --space fbnet" in text
    nothing = runner.invoke(app, ["search", "--out", str(tmp_path / "e"), "--resume"])
    assert "no config.yaml" in _error(nothing)
    assert "no config.yaml" in _error(runner.invoke(app, ["train", str(tmp_path / "e")]))


class _Notes:
    """A reporter that keeps the notes a search prints."""

    def __init__(self):
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        self.notes.append(text)


def test_uncalibrated_lut_is_announced_with_the_command_that_fixes_it(folder, tmp_path):
    from hwnas.config import SearchConfig
    from hwnas.distributed import Ranks
    from hwnas.lut.calibrate import calibrate_from_timings
    from hwnas.lut.table import LatencyTable
    from hwnas.search.device_model import open_latency_model

    lut = tmp_path / "cpu.csv"
    for suffix in (".csv", ".meta.json"):
        (tmp_path / f"cpu{suffix}").write_bytes((folder / f"cpu{suffix}").read_bytes())
    space = tiny_chain(folder)
    config = SearchConfig(device="cpu", space=str(write_tiny_chain(folder)), lut=str(lut), calibrate_networks=0)
    reporter = _Notes()
    open_latency_model(config, space, Ranks(), reporter)
    assert len(reporter.notes) == 1 and f"no calibration of space {space.name} at 16px" in reporter.notes[0]
    assert f"hwnas lut calibrate --device cpu --space {config.space} --resolution 16 --classes 10 --lut {lut}" \
        in reporter.notes[0]
    archs = [space.sample(random.Random(seed)) for seed in range(3)]
    calibrate_from_timings(LatencyTable.load(lut), space.name, archs, [1.0, 2.0, 3.0])  # stored in cpu.meta.json
    calibrated = _Notes()
    open_latency_model(config, space, Ranks(), calibrated)
    assert calibrated.notes == []


def test_untrained_architecture_weights_are_flagged(folder, tmp_path):
    """With a zero architecture learning rate FBNet's θ stays at its uniform start: confidence 0 and a warning."""
    result = runner.invoke(app, _args(folder, tmp_path / "frozen", "--strategy", "fbnet", "--latency-budget", "50%",
                                      "-p", "arch_lr=0", "-p", "arch_weight_decay=0"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "frozen" / "search.json").read_text())["arch_confidence"] == pytest.approx(0.0)
    assert "close to uniform" in " ".join(result.output.split())
