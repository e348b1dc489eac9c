"""The agent's protocol: every malformed or refused request gets a structured error and the session goes on;
the device-side measurement rule, statistics and hashing equal the host's; the shipped agent needs no torch."""

import base64
import hashlib
import io
import json
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

from hwnas.onnx_io import export_onnx
from hwnas.profilers import base
from hwnas.profilers.target import runners
from hwnas.profilers.target.agent import Agent, path_digest
from hwnas.profilers.transports import package_zip, write_bundle

QUICK_SETTINGS = {"warmup": 2, "warmup_s": 0.0, "min_repeats": 5, "max_repeats": 20, "target_ci": 0.05,
                  "budget_s": 0.2}


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> tuple[bytes, str]:
    path = tmp_path_factory.mktemp("onnx") / "conv.onnx"
    export_onnx(torch.nn.Conv2d(8, 8, 3, padding=1), torch.randn(1, 8, 16, 16), path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


@pytest.fixture()
def agent(tmp_path) -> Agent:
    return Agent(tmp_path / "cache", max_request_bytes=1 << 22)


def ask(agent: Agent, request) -> dict:
    line = request if isinstance(request, bytes) else json.dumps(request).encode()
    return agent.handle(line)


def measure_request(data: bytes, sha: str, **changes) -> dict:
    request = {"op": "measure", "runtime": "onnxruntime", "input_shape": [1, 8, 16, 16], "settings": QUICK_SETTINGS,
               "artifact": {"sha256": sha, "format": "onnx", "data_b64": base64.b64encode(data).decode()}}
    return {**request, **changes}


def test_hello_reports_the_machine_and_runtime(agent):
    reply = ask(agent, {"op": "hello", "runtime": "onnxruntime", "threads": 1, "id": 7})
    assert reply["ok"] and reply["id"] == 7 and reply["protocol"] == 1
    assert reply["runtimes"]["onnxruntime"] == __import__("onnxruntime").__version__
    assert reply["target"]["cpu"] == base.cpu_model() and reply["target"]["threads"] == 1


def test_measure_returns_timing_from_its_samples(agent, onnx_model):
    reply = ask(agent, measure_request(*onnx_model))
    assert reply["ok"], reply
    timing = base.Timing.from_samples(reply["samples_ms"])
    assert reply["timing"]["median"] == pytest.approx(timing.median) and reply["timing"]["n"] == timing.n
    assert QUICK_SETTINGS["min_repeats"] <= timing.n <= QUICK_SETTINGS["max_repeats"] and timing.median > 0


@pytest.mark.parametrize("request_, code, field", [
    (b"{not json", "invalid_json", None),
    ([1, 2], "bad_request", None),
    ({"id": 3}, "bad_request", "op"),
    ({"op": "launch"}, "unknown_op", "op"),
    ({"op": "hello", "runtime": "openvino"}, "bad_request", "runtime"),
    ({"op": "has", "sha256": "xyz", "format": "onnx"}, "bad_request", "sha256"),
    ({"op": "has", "sha256": "0" * 64, "format": "exe"}, "bad_request", "format"),
    ({"op": "put", "sha256": "0" * 64, "format": "onnx", "data_b64": "!!!"}, "bad_request", "data_b64"),
    ({"op": "measure", "runtime": "onnxruntime"}, "bad_request", "input_shape"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": [1, 8, 16, 16]}, "bad_request", "artifact"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": [1, -8, 16], "artifact": {}}, "bad_shape",
     "input_shape"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": "1x8", "artifact": {}}, "bad_request", "input_shape"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": [1, 8, 16, 16], "settings": {"repeats": 3},
      "artifact": {}}, "bad_request", "settings"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": [1, 8, 16, 16],
      "artifact": {"sha256": "a" * 64, "format": "onnx"}}, "not_found", "artifact"),
    ({"op": "measure", "runtime": "onnxruntime", "input_shape": [1, 8, 16, 16],
      "artifact": {"sha256": "a" * 64, "format": "onnx", "path": "/nonexistent/x.onnx"}}, "not_found", "artifact.path"),
])
def test_malformed_requests_get_structured_errors(agent, request_, code, field):
    reply = ask(agent, request_)
    assert reply["ok"] is False and reply["error"]["code"] == code, reply
    assert reply["error"].get("field") == field and reply["error"]["message"]


def test_artifact_hash_mismatch_and_bad_signature_are_refused_before_loading(agent, onnx_model):
    data, sha = onnx_model
    assert ask(agent, measure_request(data, "b" * 64))["error"]["code"] == "hash_mismatch"
    fake = b"\x00" * 64  # right hash, but no ONNX header
    reply = ask(agent, measure_request(fake, hashlib.sha256(fake).hexdigest()))
    assert reply["error"]["code"] == "bad_artifact"
    tflite_request = measure_request(data, sha, runtime="tflite")
    tflite_request["artifact"]["format"] = "tflite"
    assert ask(agent, tflite_request)["error"]["code"] == "bad_artifact"  # ONNX bytes have no TFL3 identifier


def test_an_artifact_the_runtime_cannot_load_is_a_load_failure(agent):
    broken = b"\x08\x07" + bytes(range(200))  # starts like an ONNX model, is not one
    reply = ask(agent, measure_request(broken, hashlib.sha256(broken).hexdigest()))
    assert reply["error"]["code"] == "load_failed" and "onnxruntime cannot load" in reply["error"]["message"]


def test_shape_that_disagrees_with_the_model_is_refused(agent, onnx_model):
    reply = ask(agent, measure_request(*onnx_model, input_shape=[1, 8, 16, 17]))
    assert reply["error"]["code"] == "bad_shape"


def test_put_then_measure_by_hash_and_path(agent, onnx_model, tmp_path):
    data, sha = onnx_model
    identity = {"sha256": sha, "format": "onnx"}
    assert ask(agent, {"op": "has", **identity})["present"] is False
    stored = ask(agent, {"op": "put", **identity, "data_b64": base64.b64encode(data).decode()})
    assert stored["stored"] and ask(agent, {"op": "has", **identity})["present"]
    assert ask(agent, {"op": "put", **identity, "data_b64": base64.b64encode(data).decode()})["stored"] is False
    request = measure_request(data, sha)
    request["artifact"] = identity
    assert ask(agent, request)["ok"]
    pushed = tmp_path / "pushed.onnx"
    pushed.write_bytes(data)
    request["artifact"] = {**identity, "path": str(pushed)}
    assert ask(agent, request)["ok"]
    pushed.write_bytes(data + b"\x00")
    assert ask(agent, request)["error"]["code"] == "hash_mismatch"


def test_mlpackage_zip_is_checked_for_escaping_paths(agent):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Manifest.json", "{}")
        archive.writestr("../escape.txt", "x")
    data = buffer.getvalue()
    reply = ask(agent, {"op": "put", "sha256": hashlib.sha256(data).hexdigest(), "format": "mlpackage",
                        "data_b64": base64.b64encode(data).decode()})
    assert reply["error"]["code"] == "bad_artifact" and "leave the package" in reply["error"]["message"]
    assert not (agent.cache / "escape.txt").exists()


def test_serve_survives_oversized_and_broken_lines_and_stops_at_bye(tmp_path, onnx_model):
    agent = Agent(tmp_path / "cache", max_request_bytes=2048)  # the ONNX model is ~3 kB as base64
    data, sha = onnx_model
    lines = [json.dumps({"op": "hello", "runtime": "onnxruntime", "id": 1}), "x" * 10_000, "{broken",
             json.dumps(measure_request(data, sha, id=2)), json.dumps({"op": "hello", "runtime": "tflite", "id": 3}),
             json.dumps({"op": "bye", "id": 4}), json.dumps({"op": "hello", "id": 5})]
    out = io.BytesIO()
    agent.serve(io.BytesIO(("\n".join(lines) + "\n").encode()), out)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r.get("error", {}).get("code") for r in replies] == [None, "too_large", "invalid_json", "too_large",
                                                                 None, None]
    assert replies[-1]["op"] == "bye" and replies[-2]["id"] == 3  # nothing after bye is answered


class SimulatedMachine:
    """A clock that only moves when a call runs, each call taking the next of a fixed list of durations."""

    def __init__(self, durations_s):
        self.now, self.durations = 0.0, iter(durations_s)

    def clock(self) -> float:
        return self.now

    def run(self) -> None:
        self.now += next(self.durations)

    def call_ms(self) -> float:
        start = self.now
        self.run()
        return (self.now - start) * 1e3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_device_side_rule_equals_the_hosts(seed):
    """runners.measure_samples (agent) and base.measure_calls (host) stop at the same call on the same machine."""
    durations = list(np.random.default_rng(seed).lognormal(0.0, 0.3, 5000) * 1e-3)
    settings = base.MeasureSettings(warmup=3, warmup_s=0.01, min_repeats=10, max_repeats=500, target_ci=0.03,
                                    budget_s=0.3)
    host_machine, device_machine = SimulatedMachine(durations), SimulatedMachine(durations)
    host = base.measure_calls(host_machine.run, settings, clock=host_machine.clock)
    device = runners.measure_samples(device_machine.call_ms, settings.to_dict(), clock=device_machine.clock)
    assert host == base.Timing.from_samples(device) and host.n > settings.min_repeats
    assert runners.timing_dict(device) == pytest.approx(host.to_dict())


def test_device_side_hashes_and_cpu_name_equal_the_hosts(tmp_path):
    (tmp_path / "pkg" / "Data").mkdir(parents=True)
    (tmp_path / "pkg" / "Manifest.json").write_text("{}")
    (tmp_path / "pkg" / "Data" / "w.bin").write_bytes(b"\x01\x02")
    assert path_digest(tmp_path / "pkg") == base.file_digest(tmp_path / "pkg")
    assert path_digest(tmp_path / "pkg" / "Manifest.json") == base.file_digest(tmp_path / "pkg" / "Manifest.json")
    assert runners.cpu_model() == base.cpu_model() and runners.resolved_threads(0) == base.resolved_threads(0)
    assert package_zip(tmp_path / "pkg") == package_zip(tmp_path / "pkg")  # deterministic bytes, stable hash


BLOCK_TORCH = "import sys; sys.modules['torch'] = None; sys.modules['hwnas'] = None; "


def test_shipped_agent_runs_without_torch_or_hwnas(tmp_path, onnx_model):
    """The files copied to a target answer hello and measure with torch and hwnas made unimportable."""
    agent_file = write_bundle(tmp_path / "bundle")
    code = BLOCK_TORCH + f"sys.path.insert(0, {str(agent_file.parent)!r}); sys.argv = ['agent.py', '--cache', " \
                         f"{str(tmp_path / 'cache')!r}]; import runpy; runpy.run_path({str(agent_file)!r}, " \
                         "run_name='__main__')"
    data, sha = onnx_model
    requests = [{"op": "hello", "runtime": "onnxruntime"}, measure_request(data, sha), {"op": "bye"}]
    result = subprocess.run([sys.executable, "-c", code], input="\n".join(map(json.dumps, requests)) + "\n",
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    replies = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, result.stderr
    assert [r["ok"] for r in replies] == [True, True, True], replies
    assert replies[1]["timing"]["n"] >= QUICK_SETTINGS["min_repeats"]


def test_module_entry_point_answers_hello(tmp_path):
    result = subprocess.run([sys.executable, "-m", "hwnas.profilers.target.agent", "--cache", str(tmp_path)],
                            input='{"op": "hello", "runtime": "onnxruntime"}\n', capture_output=True, text=True,
                            timeout=120)
    reply = json.loads(result.stdout.splitlines()[0])
    assert result.returncode == 0 and reply["ok"] and reply["runtimes"] == {"onnxruntime": reply["target"][
        "runtime_version"]}


def test_shipped_files_are_python_3_8_syntax():
    """Boards run older Pythons (JetPack 5 has 3.8): the files copied there must parse as 3.8."""
    import ast
    import re

    from hwnas.profilers.transports import agent_bundle

    for name, source in agent_bundle().items():
        ast.parse(source, filename=name, feature_version=(3, 8))
        assert not re.findall(rb"isinstance\([^)]*\|", source), name  # X | Y types at run time need 3.10
