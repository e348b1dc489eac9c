"""`hwnas export` through the CLI: a run trained by `hwnas train` exported to ONNX and TFLite (fp32, fp16, int8)
with parity, the int8 accuracy drop, LUT prediction and a measurement; published networks by name; resuming;
and the one-line refusals."""

import hashlib
import importlib.util
import json
import random
import shutil

import pytest
import torch
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.lut import LatencyModel, LatencyTable
from hwnas.spaces.catalog import get_space

torch.set_num_threads(1)
runner = CliRunner()
HAS_TFLITE = importlib.util.find_spec("litert_torch") is not None


def invoke(*args):
    result = runner.invoke(app, ["export", *map(str, args)])
    return result, " ".join(result.output.split())


def exported(*args):
    result, output = invoke(*args, "--json")
    assert result.exit_code == 0, output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run directory as search + `hwnas train` leave it: a random FBNet-space architecture at 32 px trained
    for two epochs on the embedded digits (enough to leave the random regime: see the fp16 check below)."""
    from hwnas.config import DataConfig, SearchConfig, save_config
    from hwnas.retrain import train_run

    run = tmp_path_factory.mktemp("runs") / "digits-fbnet"
    run.mkdir()
    arch = get_space("fbnet", 32, 10).sample(random.Random(0))
    arch.save(run / "arch.json", device="cpu", space="fbnet")
    save_config(SearchConfig(device="cpu", space="fbnet", data=DataConfig(source="digits", resolution=32)),
                run / "config.yaml")
    train_run(run, epochs=2, measure=False)
    return run, arch


@pytest.mark.skipif(not HAS_TFLITE, reason="TFLite export needs litert-torch (pip install 'hwnas[tflite]')")
@pytest.mark.slow  # trains a run (module fixture) or exports whole networks
def test_trained_run_exports_checks_predicts_and_measures(trained_run, tiny_lut):
    run, arch = trained_run
    formats = "onnx,tflite" + (",tensorrt" if importlib.util.find_spec("tensorrt") else "")
    report = exported(run, "--to", formats, "--precision", "fp32,fp16,int8", "--device", "cpu",
                      "--lut-dir", tiny_lut.parent, "--measure", "cpu")
    assert report["trained"] and report["warnings"] == [] and report["kind"] == "run"
    assert report["arch"] == arch.to_string() and report["images"]["dataset"] == "digits"
    assert json.loads((run / "export" / "export.json").read_text()) == report  # the default folder

    files = {(a["format"], a["precision"]): a for a in report["artifacts"]}
    assert {("onnx", "fp32"), ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "int8")} <= set(files)
    for entry in files.values():
        path = run / "export" / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert path.stat().st_size == entry["bytes"]
        assert entry["parity"]["passed"] is not False, entry  # fp32 <= 1e-4, fp16 <= 1e-2 of the output scale
    assert files[("tflite", "fp16")]["parity"]["passed"] is True
    assert files[("tflite", "fp16")]["parity"]["conversion_passed"] is True
    assert files[("onnx", "fp32")]["describe"]["opset"] == 17

    accuracy = files[("tflite", "int8")]["accuracy"]
    reference = _val_top1(run, arch)
    assert accuracy["images"] == reference[1] and accuracy["fp32_top1"] == pytest.approx(reference[0])
    assert accuracy["drop_pct_points"] == pytest.approx(100 * (accuracy["fp32_top1"] - accuracy["int8_top1"]))
    assert accuracy["int8_top1"] > accuracy["fp32_top1"] - 0.15  # a broken quantisation falls to chance (0.1)

    prediction, = report["latency"]["predicted"]
    assert prediction["predicted_ms"] == pytest.approx(LatencyModel(LatencyTable.load(tiny_lut)).predict(arch))
    measured = report["latency"]["measured"]
    assert measured["timed"] == "model.fp32.onnx" and measured["median_ms"] > 0
    assert measured["predicted_ms"] == prediction["predicted_ms"]


def _val_top1(run, arch) -> tuple[float, int]:
    """Top-1 of the trained PyTorch network on the run's validation split, computed here independently."""
    from hwnas.data import load_dataset

    model = arch.build()
    model.load_state_dict(torch.load(run / "trained.pt", weights_only=True))
    val = load_dataset("digits", 32, "val")
    images, labels = val.batch(range(len(val)))
    with torch.no_grad():
        return float((model.eval()(images).argmax(1) == labels).float().mean()), len(labels)


@pytest.mark.slow  # trains a run (module fixture) or exports whole networks
def test_published_network_by_name_then_reused_then_fresh(tmp_path):
    args = ("--arch", "mobilenetv2", "-r", "32", "--classes", "10", "--to", "onnx", "--out", tmp_path)
    first = exported(*args)
    assert first["name"] == "mobilenetv2" and first["kind"] == "published" and not first["trained"]
    assert "no trained weights" in first["warnings"][0]
    assert first["input_shape"] == [1, 3, 32, 32] and first["num_classes"] == 10
    entry, = first["artifacts"]
    assert entry["file"] == "model.fp32.onnx" and entry["parity"]["passed"] and "reused" not in entry
    again = exported(*args)
    assert again["artifacts"][0]["reused"] and again["artifacts"][0]["sha256"] == entry["sha256"]
    fresh = exported(*args, "--fresh")
    assert "reused" not in fresh["artifacts"][0] and fresh["artifacts"][0]["sha256"] == entry["sha256"]
    changed = exported(*args[:-2], "--seed", "1", "--out", tmp_path)  # another network: nothing reused
    assert "reused" not in changed["artifacts"][0] and changed["artifacts"][0]["sha256"] != entry["sha256"]


@pytest.mark.slow  # trains a run (module fixture) or exports whole networks
def test_run_without_trained_weights_exports_with_a_warning(trained_run, tmp_path):
    run = tmp_path / "untrained"
    run.mkdir()
    for name in ("arch.json", "config.yaml"):
        shutil.copy(trained_run[0] / name, run / name)
    report = exported(run, "--to", "onnx", "--data", "digits", "--lut-dir", tmp_path / "no-luts")
    assert not report["trained"] and "hwnas train" in report["warnings"][0]
    assert report["latency"]["predicted"][0]["device"] == "cpu"  # the run's device, LUT absent here
    assert "no latency table" in report["latency"]["predicted"][0]["error"]


def test_run_split_settings_reach_the_export_source(tmp_path):
    from hwnas.config import DataConfig, SearchConfig, save_config
    from hwnas.export.source import resolve_source

    run = tmp_path / "cut"
    run.mkdir()
    get_space("fbnet", 32, 10).sample(random.Random(0)).save(run / "arch.json", device="cpu", space="fbnet")
    data = DataConfig(source="digits", split_seed=3, limit=500, train_limit=200)
    save_config(SearchConfig(device="cpu", space="fbnet", data=data), run / "config.yaml")
    source = resolve_source(run)
    assert source.data == "digits" and source.data_options == data.split_options()
    assert source.data_options["train_limit"] == 200


@pytest.mark.slow  # trains a run (module fixture) or exports whole networks
def test_supernet_leftovers_in_the_weights_are_refused(trained_run, tmp_path):
    run = tmp_path / "leftovers"
    shutil.copytree(trained_run[0], run, ignore=shutil.ignore_patterns("export"))
    state = torch.load(run / "trained.pt", weights_only=True)
    state["5.candidates.3.expand.0.weight"] = torch.zeros(1)
    torch.save(state, run / "trained.pt")
    result, output = invoke(run, "--to", "onnx")
    assert result.exit_code == 1
    assert "trained.pt: does not fit the architecture in arch.json: 1 key(s) not in the network" in output
    assert "supernet leftovers" in output and "Traceback" not in result.output


@pytest.mark.parametrize("args,message", [
    ((), "give a run directory (hwnas export runs/NAME) or --arch STRING|NAME"),
    (("--arch", "mobilenetv2", "--to", "onnx,pdf"), "unknown export format 'pdf' (known: onnx, tflite"),
    (("--arch", "mobilenetv2", "--to", "coreml", "--precision", "int8"), "coreml exports fp32, fp16; --precision"),
    (("--arch", "mobilenetv2", "--precision", "fp8"), "--precision 'fp8' is not one of fp32, fp16, int8"),
    (("--arch", "resnet50"), "unknown published network 'resnet50'"),
    (("--arch", "32:relu:cn_k3_s2_c8,xx_c8,fc_c10"), "unknown block type 'xx'"),
    (("--arch", "mobilenetv2", "--to", "coreml", "--deployment-target", "iOS14", "-r", "32"),
     "'iOS14' is not one an ML program supports"),
    (("--arch", "mobilenetv2", "--measure", "cpuu"), "unknown device 'cpuu'"),
])
def test_user_mistakes_are_one_line(args, message, tmp_path):
    result, output = invoke(*args, "--out", tmp_path)
    assert result.exit_code == 1 and message in output, output
    assert "Traceback" not in result.output


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_missing_exporter_package_names_the_extra(tmp_path):
    result, output = invoke("--arch", "mobilenetv2", "--to", "onnx,tensorrt", "--out", tmp_path)
    assert result.exit_code == 1 and 'pip install "hwnas[tensorrt]"' in output
    assert not (tmp_path / "export.json").exists()  # refused before any work
