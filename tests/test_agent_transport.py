"""The real agent through the local-subprocess transport: the same LUT as in-process profiling (ONNX Runtime and
LiteRT), a disconnect mid-run that loses nothing and resumes, version mismatches refused, unreachable boards.

Noise: this machine is a shared 2-core VM; a block's median can move 2x between two measurements minutes apart
(the drift check has seen the reference block run at 2x). So the two LUTs are built interleaved, block by block,
and compared with bounds that catch systematic errors (a unit slip is 1000x, per-batch vs per-image or all cores
vs one thread is several-fold, timing the protocol round trip instead of the call is 10x+ for these tens-of-us
blocks) but not load swings: each block within 3x, the geometric mean of the ratios within 1.5x.
"""

import io
import json
import math
import os
import signal
import tarfile
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.device import get_device
from hwnas.errors import HwnasError, RuntimeUnavailable
from hwnas.lut import LatencyTable
from hwnas.lut.build import build_lut, profile_specs, table_meta
from hwnas.profilers import get_profiler
from hwnas.profilers.base import fingerprint_id
from hwnas.profilers.remote import RemoteProfiler
from hwnas.profilers.tflite import TFLiteProfiler
from hwnas.profilers.transports import (
    AGENT_FILES,
    SSH_OPTIONS,
    agent_bundle,
    bundle_id,
    bundle_tar,
    remote_install_script,
    remote_start_script,
    ssh_command,
)

from .conftest import QUICK

runner = CliRunner()
COMPARE = replace(QUICK, warmup_s=0.2, max_repeats=400, budget_s=0.3)  # a fresh agent process starts cold
DEVICES = """devices:
  cpu-agent:
    runtime: onnxruntime
    threads: 1
    transport: agent://local
  tflite-agent:
    runtime: tflite
    threads: 1
    transport: agent://local
  far-board:
    runtime: tflite
    transport: ssh://pi@hwnas-no-such-board.invalid:2222
  phone-ort:
    runtime: onnxruntime
    transport: adb://
  torch-agent:
    runtime: torch
    transport: agent://local
"""


@pytest.fixture(scope="module", autouse=True)
def private_conversion_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def devices_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("devices") / "devices.yaml"
    path.write_text(DEVICES)
    return path


def interleaved_luts(local_name, agent_name, devices_file, specs, folder):
    """Both tables built block by block in alternation, so slow load changes hit both alike. (TFLite blocks are
    converted once: the second profiler finds the file in the conversion cache, as a second device would.)"""
    local, agent = get_device(local_name), get_device(agent_name, devices_file)
    with get_profiler(local) as local_profiler, get_profiler(agent) as agent_profiler:
        assert isinstance(agent_profiler, RemoteProfiler)
        tables = [LatencyTable.open(folder / f"{device.name}.csv", table_meta(profiler, COMPARE))
                  for device, profiler in ((local, local_profiler), (agent, agent_profiler))]
        for spec in specs:
            for profiler, table in zip((local_profiler, agent_profiler), tables):
                profile_specs([spec], profiler, table, COMPARE, steadiness=None)
    return tables


def assert_same_lut(local_table, agent_table):
    assert local_table.meta["fingerprint"] == agent_table.meta["fingerprint"]
    assert local_table.meta["fingerprint_id"] == agent_table.meta["fingerprint_id"]
    assert local_table.keys == agent_table.keys
    keys = sorted(local_table.keys)
    ratios = agent_table.latencies(keys) / local_table.latencies(keys)
    assert all(1 / 3 < r < 3 for r in ratios), dict(zip(keys, ratios))
    assert 1 / 1.5 < math.exp(sum(math.log(r) for r in ratios) / len(ratios)) < 1.5, dict(zip(keys, ratios))
    assert list(agent_table.frame.sort_values("key")["note"]) == list(local_table.frame.sort_values("key")["note"])


@pytest.mark.slow  # builds LUTs through an agent
def test_agent_onnxruntime_lut_equals_in_process(devices_file, tiny_space, tmp_path):
    specs = [tiny_space.specs()[i] for i in (0, 5, 12, 30, 47, 75, 104, 109, 110)]
    assert_same_lut(*interleaved_luts("cpu", "cpu-agent", devices_file, specs, tmp_path))


@pytest.mark.skipif(TFLiteProfiler.unavailable_reason() is not None, reason="LiteRT not installed here")
@pytest.mark.slow  # builds LUTs through an agent
def test_agent_litert_lut_equals_in_process(devices_file, tiny_space, tmp_path):
    specs = [tiny_space.specs()[i] for i in (0, 30, 110)]
    assert_same_lut(*interleaved_luts("tflite-cpu", "tflite-agent", devices_file, specs, tmp_path))


@pytest.mark.slow  # builds LUTs through an agent
def test_disconnect_mid_run_loses_no_rows_and_a_rerun_resumes(devices_file, tiny_space, tmp_path):
    specs = [tiny_space.specs()[i] for i in (0, 5, 12, 30, 47, 75)]
    device, lut = get_device("cpu-agent", devices_file), tmp_path / "agent.csv"
    measured = []
    with get_profiler(device) as profiler:
        table = LatencyTable.open(lut, table_meta(profiler, QUICK))

        def on_block(spec, was_measured):
            measured.append(spec.key)
            if len(measured) == 3:  # the board drops off the network: its agent dies
                os.kill(profiler._session.connection.process.pid, signal.SIGKILL)

        with pytest.raises(HwnasError, match=r"lost the connection to agent://local .*rerun the same command") as err:
            profile_specs(specs, profiler, table, QUICK, steadiness=None, on_block=on_block)
    assert "\n" not in str(err.value)
    assert LatencyTable.load(lut).keys == set(measured)
    report, table = build_lut(device, specs, lut, QUICK, steadiness=None)
    assert report.skipped == 3 and report.measured == 3 and table.keys == {s.key for s in specs}


def test_agent_with_another_runtime_version_is_refused_unless_forced(devices_file, tiny_space, tmp_path):
    device, lut = get_device("cpu-agent", devices_file), tmp_path / "board.csv"
    with get_profiler(device) as profiler:
        current = profiler.fingerprint()
    before_upgrade = {**current, "runtime_version": "1.17.0"}  # the table was measured before the board's upgrade
    LatencyTable.open(lut, {"device": device.name, "fingerprint": before_upgrade,
                            "fingerprint_id": fingerprint_id(before_upgrade), "settings": QUICK.to_dict()})
    args = ["profile", "--device", "cpu-agent", "--devices", str(devices_file), "--lut", str(lut),
            "--resolution", "32", "--classes", "10"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1 and "different setup" in refused.output and "--force" in refused.output
    assert "1.17.0" in refused.output and current["runtime_version"] in refused.output
    report, table = build_lut(device, tiny_space.specs()[:2], lut, QUICK, force=True, steadiness=None)
    assert report.measured == 2 and len(table) == 2


def test_unreachable_board_is_one_line_with_setup_steps(devices_file, tmp_path):
    result = runner.invoke(app, ["profile", "--device", "far-board", "--devices", str(devices_file), "--lut",
                                 str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    message = " ".join(result.output.split())
    assert "cannot reach ssh://pi@hwnas-no-such-board.invalid:2222" in message
    assert "ssh -p 2222 pi@hwnas-no-such-board.invalid true" in message
    assert "python3 -m pip install numpy ai-edge-litert" in message
    assert not (tmp_path / "x.csv").exists()  # nothing written for a board that never answered


def test_runtimes_that_cannot_run_remotely_are_config_errors(devices_file):
    with pytest.raises(HwnasError, match="runtime torch measures only in this process"):
        get_profiler(get_device("torch-agent", devices_file))
    with pytest.raises(HwnasError, match="adb:// devices are timed by TFLite's benchmark_model"):
        get_profiler(get_device("phone-ort", devices_file))


def test_agent_start_failure_is_a_clear_error(tmp_path):
    device = replace(get_device("cpu"), name="broken", transport="ssh://nobody@localhost:1")
    with pytest.raises(RuntimeUnavailable, match=r"device 'broken': cannot reach ssh://nobody@localhost:1 \(") as err:
        with get_profiler(device) as profiler:
            profiler.fingerprint()
    assert "\n" not in str(err.value)


def test_ssh_command_lines():
    assert ssh_command("pi@raspi:2222") == ["ssh", *SSH_OPTIONS, "-p", "2222", "--", "pi@raspi"]
    assert ssh_command("jetson") == ["ssh", *SSH_OPTIONS, "--", "jetson"]
    assert "BatchMode=yes" in SSH_OPTIONS  # never hang on a password prompt
    ident = bundle_id(agent_bundle())
    assert f"agent-{ident}" in remote_install_script(ident) and "tar -xf -" in remote_install_script(ident)
    assert remote_start_script(ident, "/usr/bin/python3").startswith("exec /usr/bin/python3 ")
    names = tarfile.open(fileobj=io.BytesIO(bundle_tar(agent_bundle()))).getnames()
    assert sorted(names) == sorted(AGENT_FILES)
    changed = {**agent_bundle(), "agent.py": agent_bundle()["agent.py"] + b"\n"}
    assert bundle_id(changed) != ident  # an updated agent goes to a new folder


def test_remote_fingerprint_comes_from_the_agents_hello(devices_file):
    with get_profiler(get_device("cpu-agent", devices_file)) as profiler:
        target = profiler.target
        assert profiler.fingerprint()["runtime_version"] == target["runtime_version"]
        assert json.dumps(profiler.fingerprint(), sort_keys=True)  # serialisable for meta.json
