"""Issue 31 hardening of the device agent and the remote transports: every request line gets an answer (deep
nesting, huge integers, a failing handler), an mlpackage zip may not unpack without bound, a path artifact must be a
regular file, an ssh host or adb serial never reaches a command as an option, and adb timings have finite p10/p90."""

import base64
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import threading
import time
import zipfile
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from hwnas.cli import app
from hwnas.device import get_device
from hwnas.errors import ConfigError, RuntimeUnavailable
from hwnas.profilers import get_profiler
from hwnas.profilers.adb import parse_benchmark_output
from hwnas.profilers.base import Timing
from hwnas.profilers.target.agent import MAX_DEPTH, Agent, path_digest
from hwnas.profilers.transports import SSH_OPTIONS, package_zip, ssh_command

from .test_agent_adb import NEWER, OLDER
from .test_agent_protocol import ask


@pytest.fixture()
def agent(tmp_path) -> Agent:
    return Agent(tmp_path / "cache")  # the default --max-request-bytes, as a board runs it


def serve(agent: Agent, lines: list[bytes]) -> list[dict]:
    """The agent's replies to `lines`, through its real line loop."""
    out = io.BytesIO()
    agent.serve(io.BytesIO(b"".join(line + b"\n" for line in lines)), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


HELLO = json.dumps({"op": "hello", "id": 2}).encode()


# -- every line gets an answer ----------------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [200_000, MAX_DEPTH + 1])
def test_deeply_nested_json_is_refused_and_the_session_goes_on(agent, depth):
    replies = serve(agent, [b"[" * depth + b"]" * depth, HELLO])
    assert replies[0] == {"ok": False, "error": {"code": "invalid_json",
                                                 "message": f"a request nests at most {MAX_DEPTH} levels"}}
    assert replies[1]["ok"] and replies[1]["id"] == 2


def test_an_integer_of_5000_digits_is_refused_and_the_session_goes_on(agent):
    replies = serve(agent, [b'{"op": "hello", "id": ' + b"9" * 5000 + b"}",
                            b'{"op": "hello", "threads": -' + b"1" * 5000 + b"}", HELLO])
    for reply in replies[:2]:
        assert reply["error"]["code"] == "invalid_json" and "5000 digits" in reply["error"]["message"], reply
    assert replies[2]["ok"]


def test_an_unexpected_failure_inside_a_handler_is_an_internal_error_reply(tmp_path):
    """The cache folder is a file (a misconfigured board): storing fails with an OSError, the agent answers it."""
    (tmp_path / "not-a-folder").write_text("x")
    data = b"\x08\x07model"
    put = json.dumps({"op": "put", "sha256": hashlib.sha256(data).hexdigest(), "format": "onnx", "id": 1,
                      "data_b64": base64.b64encode(data).decode()}).encode()
    replies = serve(Agent(tmp_path / "not-a-folder"), [put, HELLO])
    assert replies[0]["ok"] is False and replies[0]["id"] == 1 and replies[0]["error"]["code"] == "internal"
    assert "Error" in replies[0]["error"]["message"] and replies[1]["ok"]


# -- artifacts ------------------------------------------------------------------------------------------------
def put_package(agent: Agent, data: bytes) -> dict:
    return ask(agent, {"op": "put", "sha256": hashlib.sha256(data).hexdigest(), "format": "mlpackage",
                       "data_b64": base64.b64encode(data).decode()})


def test_zip_bomb_is_refused_before_anything_is_written(agent):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("Manifest.json", "{}")
        with archive.open("Data/weights.bin", "w") as member:
            for _ in range(200):
                member.write(bytes(1 << 20))  # 200 MiB of zeros
    data = buffer.getvalue()
    assert len(data) < 250_000  # the audit's case: ~199 KiB on the wire
    reply = put_package(agent, data)
    assert reply["ok"] is False and reply["error"]["code"] == "too_large", reply
    assert f"unpacks to {200 * (1 << 20) + 2} bytes" in reply["error"]["message"]
    assert not any((agent.cache / "artifacts").iterdir())  # no partial folder left behind


def test_a_real_package_zip_still_unpacks(agent, tmp_path):
    package = tmp_path / "block.mlpackage"
    (package / "Data").mkdir(parents=True)
    (package / "Manifest.json").write_text('{"fileFormatVersion": "1.0.0"}')
    (package / "Data" / "weights.bin").write_bytes(os.urandom(100_000))
    reply = put_package(agent, package_zip(package))
    assert reply["ok"] and reply["stored"], reply
    assert path_digest(package) == path_digest(agent.cache / "artifacts" / os.path.basename(reply["path"]))


def measure_path(path, sha: str, fmt: str = "onnx", runtime: str = "onnxruntime") -> dict:
    return {"op": "measure", "runtime": runtime, "input_shape": [1, 8, 16, 16],
            "artifact": {"sha256": sha, "format": fmt, "path": str(path)}}


def test_a_directory_path_is_refused_before_hashing(agent, tmp_path):
    folder = tmp_path / "model.onnx"  # a folder, though named like a model; its own digest, so only its kind is wrong
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"\x08" * 100)
    reply = ask(agent, measure_path(folder, path_digest(folder)))
    assert reply["error"] == {"code": "bad_artifact", "field": "artifact.path",
                              "message": f"{folder} is a directory, expected a regular onnx file"}
    reply = ask(agent, measure_path(folder, path_digest(folder), "mlpackage", "coreml"))
    assert reply["error"]["code"] == "bad_artifact" and "expected an .mlpackage folder" in reply["error"]["message"]


def test_a_system_folder_is_refused_at_once(agent):
    """The audit's case: `/usr` used to be hashed file by file before any answer."""
    start = time.monotonic()
    for fmt, runtime in (("onnx", "onnxruntime"), ("mlpackage", "coreml")):
        reply = ask(agent, measure_path("/usr", "a" * 64, fmt, runtime))
        assert reply["error"]["code"] == "bad_artifact" and "/usr is a directory" in reply["error"]["message"]
    assert time.monotonic() - start < 1.0


def test_a_fifo_path_is_refused_without_blocking(agent, tmp_path):
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    answered = threading.Event()

    def unblock() -> None:  # should the agent open the fifo, a writer coming and going ends its read (no hang)
        if not answered.wait(5):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    watchdog = threading.Thread(target=unblock, daemon=True)
    watchdog.start()
    start = time.monotonic()
    reply = ask(agent, measure_path(fifo, "a" * 64))
    answered.set()
    watchdog.join()
    assert reply["error"]["code"] == "bad_artifact" and f"{fifo} is a fifo" in reply["error"]["message"], reply
    assert time.monotonic() - start < 5


def test_a_device_path_is_refused(agent):
    reply = ask(agent, measure_path("/dev/null", hashlib.sha256(b"").hexdigest(), "plan", "tensorrt"))
    assert reply["error"] == {"code": "bad_artifact", "field": "artifact.path",
                              "message": "/dev/null is a character device, expected a regular plan file"}


# -- transports ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("transport", ["ssh://-Epwned3", "ssh://-Epwned3:22", "ssh://pi@-Epwned3", "adb://-d"])
def test_a_target_that_looks_like_an_option_is_a_config_error(transport):
    device = replace(get_device("tflite-cpu"), name="evil", transport=transport)
    with pytest.raises(ConfigError) as error:
        get_profiler(device)
    message = str(error.value)
    assert message.startswith(f"device 'evil': transport '{transport}'") and "may not begin with '-'" in message
    assert "\n" not in message


def test_cli_refuses_an_ssh_option_host_without_running_ssh(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `ssh -Epwned3` would write its log to ./pwned3
    devices = tmp_path / "devices.yaml"
    devices.write_text("devices:\n  evil:\n    runtime: onnxruntime\n    transport: ssh://-Epwned3\n")
    result = CliRunner().invoke(app, ["profile", "--device", "evil", "--devices", str(devices), "--lut",
                                      str(tmp_path / "x.csv")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "'ssh://-Epwned3'" in result.output and "ssh -Epwned3" not in result.output
    assert not (tmp_path / "pwned3").exists() and not (tmp_path / "x.csv").exists()


def test_ssh_argv_ends_the_options_before_the_host():
    argv = ssh_command("pi@raspi:2222")
    assert argv == ["ssh", *SSH_OPTIONS, "-p", "2222", "--", "pi@raspi"]
    assert argv.index("--") == len(argv) - 2  # every option before it, only the host after it


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")
def test_real_ssh_reads_the_argv_as_built(tmp_path):
    """`ssh -G` prints the configuration a command line resolves to, without connecting."""
    ssh, *rest = ssh_command("pi@raspi:2222")
    shown = subprocess.run([ssh, "-G", *rest, "true"], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    settings = dict(line.split(" ", 1) for line in shown.stdout.splitlines() if " " in line)
    assert shown.returncode == 0 and settings["user"] == "pi" and settings["hostname"] == "raspi"
    assert settings["port"] == "2222" and settings["batchmode"] == "yes"
    refused = subprocess.run(["ssh", "-G", *ssh_command("-Epwned3")[1:], "true"], capture_output=True, text=True,
                             timeout=30, cwd=tmp_path)  # the host check bypassed: after `--` ssh takes it as a host
    assert refused.returncode != 0 and "hostname contains invalid characters" in refused.stderr
    assert not (tmp_path / "pwned3").exists()  # as an option, -E would have opened this log file


def test_ssh_setup_hint_keeps_the_port_and_the_devices_python(tmp_path):
    device = replace(get_device("tflite-cpu"), name="board", transport="ssh://pi@hwnas-no-such-board.invalid:2222",
                     python="/opt/hwnas env/bin/python")
    with pytest.raises(RuntimeUnavailable) as error:
        with get_profiler(device, tmp_path) as profiler:
            profiler.fingerprint()
    message = str(error.value)
    assert "`ssh -p 2222 pi@hwnas-no-such-board.invalid true`" in message
    assert "on the target run: '/opt/hwnas env/bin/python' -m pip install numpy ai-edge-litert" in message


# -- adb --------------------------------------------------------------------------------------------------------
SUMMARY_ONLY = "INFO: Inference timings in us: Init: 3021, First inference: 310, Inference (avg): 122.7\n"


@pytest.mark.parametrize("text, spread, p10_ms, p90_ms", [
    (NEWER, "p5/p95", 0.112, 0.136),  # benchmark_model's p5/p95
    (OLDER, "min/max", 1901.0, 2080.7),  # older builds print min/max, no percentiles
    (SUMMARY_ONLY, "avg", 0.1227, 0.1227),  # no statistics line at all
])
def test_adb_timing_has_finite_p10_and_p90(text, spread, p10_ms, p90_ms):
    timing, meta = parse_benchmark_output(text).timing()
    assert timing["p10"] == pytest.approx(p10_ms) and timing["p90"] == pytest.approx(p90_ms)
    assert meta["p10_p90"] == spread
    stats = Timing.from_dict(timing)
    assert all(math.isfinite(v) for v in (stats.median, stats.p10, stats.p90, stats.mean, stats.std))
    assert stats.p10 <= stats.median <= stats.p90
    json.dumps({k: v for k, v in timing.items() if k != "rel_ci"}, allow_nan=False)  # strict JSON for meta.json


def test_a_devices_file_with_an_option_looking_host_is_refused_when_loaded(tmp_path):
    """`ssh://-Epwned3` is refused where the devices file is read, before any command could be built from it."""
    from hwnas.device import load_devices
    from hwnas.errors import ConfigError

    path = tmp_path / "devices.yaml"
    path.write_text("devices:\n  board:\n    runtime: tflite\n    transport: ssh://-Epwned3\n")
    with pytest.raises(ConfigError, match="device 'board': transport 'ssh://-Epwned3'.*may not begin with '-'"):
        load_devices(path)
