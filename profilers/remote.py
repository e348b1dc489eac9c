"""Measuring on another machine: compile here, time there through the agent (agent://local, ssh://) or adb.

The fingerprint comes from the target's own hello (its CPU/GPU and runtime version), so a table measured with one
runtime build refuses rows from another unless forced. A connection that drops mid-run raises a one-line
HwnasError; the rows already measured are on disk and a rerun resumes.
"""

from __future__ import annotations

import hashlib
import importlib
import shlex
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from hwnas.device import Device
from hwnas.errors import ConfigError, HwnasError, RuntimeUnavailable
from hwnas.onnx_io import export_onnx
from hwnas.profilers.base import Artifact, MeasureSettings, Profiler, Timing
from hwnas.profilers.options import check_options
from hwnas.profilers.transports import (
    HELLO_TIMEOUT_S,
    AgentConnection,
    AgentError,
    TransportError,
    agent_command,
    check_transport,
    encode_artifact,
    package_zip,
    ssh_login,
)

PROTOCOL = 1
REMOTE_RUNTIMES = ("onnxruntime", "tflite", "coreml", "tensorrt")
TARGET_INSTALL = {  # what `<the device's python> -m pip install` needs on the target
    "onnxruntime": "numpy onnxruntime",
    "tflite": "numpy ai-edge-litert",
    "coreml": "numpy coremltools",
    "tensorrt": "numpy cuda-python (TensorRT's Python bindings come with JetPack)",
}
README_HINT = "see README 'Profiling a remote device'"
RUN_FACTS = ("build_s", "engine")  # facts of one run (engine built or cached), kept out of the LUT note


def _onnxruntime_backend() -> SimpleNamespace:
    """ONNX Runtime on a target: the host exports ONNX; the fingerprint has the in-process profiler's fields."""

    def host_artifact(model: nn.Module, input_shape: tuple[int, ...], device: Device, workdir: Path) -> Artifact:
        path = workdir / f"{uuid.uuid4().hex}.onnx"
        export_onnx(model, torch.randn(*input_shape), path)
        return Artifact(path, "onnx", tuple(input_shape))

    def fingerprint(target: dict[str, Any], device: Device) -> dict[str, Any]:
        keys = ("cpu", "machine", "system", "runtime", "runtime_version", "threads")
        return {**{k: target[k] for k in keys}, "precision": device.precision, "batch": device.batch}

    return SimpleNamespace(host_artifact=host_artifact, fingerprint=fingerprint,
                           converter_unavailable_reason=lambda: None)


def runtime_backend(runtime: str) -> Any:
    """The host half of a runtime: host_artifact(), fingerprint(target, device), converter_unavailable_reason()."""
    if runtime == "onnxruntime":
        return _onnxruntime_backend()
    return importlib.import_module(f"hwnas.profilers.{runtime}")


def artifact_payload(artifact: Artifact) -> tuple[bytes, str]:
    """The bytes that travel (a folder artifact as a deterministic zip) and their sha256."""
    data = package_zip(artifact.path) if artifact.path.is_dir() else artifact.path.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


class AgentSession:
    """The host side of the agent protocol over one connection; artifacts go across once per session."""

    def __init__(self, connection: AgentConnection):
        self.connection = connection
        self._present: set[str] = set()

    def call(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        reply = self.connection.request(payload, timeout)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            raise AgentError(str(error.get("code", "unknown")), str(error.get("message", reply)))
        return reply

    def hello(self, runtime: str, threads: int) -> dict[str, Any]:
        reply = self.call({"op": "hello", "runtime": runtime, "threads": threads}, HELLO_TIMEOUT_S)
        if reply.get("protocol") != PROTOCOL:
            raise TransportError(f"the agent speaks protocol {reply.get('protocol')}, this hwnas speaks {PROTOCOL}")
        return reply["target"]

    def measure(self, artifact: Artifact, device: Device, settings: MeasureSettings) -> dict[str, Any]:
        data, sha = artifact_payload(artifact)
        identity = {"sha256": sha, "format": artifact.format}
        if sha not in self._present:
            if not self.call({"op": "has", **identity}, 60)["present"]:
                self.call({"op": "put", **identity, "data_b64": encode_artifact(data)}, 60 + len(data) / 2e5)
            self._present.add(sha)
        timeout = 120 + 4 * (settings.budget_s + settings.warmup_s) + (1800 if device.runtime == "tensorrt" else 0)
        return self.call({"op": "measure", "runtime": device.runtime, "artifact": identity,
                          "input_shape": list(artifact.input_shape), "threads": device.threads,
                          "precision": device.precision, "options": device.options,
                          "settings": settings.to_dict()}, timeout)

    def close(self) -> None:
        self.connection.close()


class RemoteProfiler(Profiler):
    """A device reached over `agent://local`, `ssh://...` or `adb://...`: compile here, time on the target."""

    runtime = "remote"

    def __init__(self, device: Device, workdir: str | Path | None = None):
        if device.runtime not in REMOTE_RUNTIMES:
            raise ConfigError(f"device '{device.name}': runtime {device.runtime} measures only in this process "
                              f"(transport: local); remote runtimes: {', '.join(REMOTE_RUNTIMES)}")
        if device.transport_scheme == "adb" and device.runtime != "tflite":
            raise ConfigError(f"device '{device.name}': adb:// devices are timed by TFLite's benchmark_model, "
                              f"so runtime must be tflite, not {device.runtime}")
        check_transport(device.transport, f"device '{device.name}': ")
        check_options(device)
        super().__init__(device, workdir)
        self.backend = runtime_backend(device.runtime)
        missing = self.backend.converter_unavailable_reason()
        if missing:
            raise RuntimeUnavailable(f"device '{device.name}': converting for {device.runtime} here needs {missing}")
        self._session: Any = None
        self._target: dict[str, Any] | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None  # checked per device when connecting

    def _connect(self) -> None:
        device = self.device
        try:
            if device.transport_scheme == "adb":
                from hwnas.profilers.adb import AdbSession

                session: Any = AdbSession(device.transport_target, device)
            else:
                command = agent_command(device.transport, device.python, self.workdir)
                session = AgentSession(AgentConnection(command, self.workdir / "agent-stderr.log"))
            try:
                target = session.hello(device.runtime, device.threads)
            except (TransportError, AgentError):
                session.close()
                raise
        except (TransportError, AgentError) as error:
            raise RuntimeUnavailable(f"device '{device.name}': cannot reach {device.transport} ({error}); "
                                     f"{self._setup_hint()}") from None
        if target.get("runtime_version") is None:
            session.close()
            what = ("TFLite's benchmark_model binary" if device.transport_scheme == "adb"
                    else f"{device.runtime} installed for {device.python}")
            raise RuntimeUnavailable(f"device '{device.name}': {device.transport} lacks {what}; "
                                     f"{self._install_hint()}")
        self._session, self._target = session, target

    def _install_hint(self) -> str:
        if self.device.transport_scheme == "adb":
            return ("push it once: adb push benchmark_model /data/local/tmp/ && adb shell chmod +x "
                    f"/data/local/tmp/benchmark_model ({README_HINT})")
        return (f"on the target run: {shlex.quote(self.device.python)} -m pip install "
                f"{TARGET_INSTALL[self.device.runtime]} ({README_HINT})")

    def _setup_hint(self) -> str:
        scheme, target = self.device.transport_scheme, self.device.transport_target
        if scheme == "ssh":
            login, port = ssh_login(target)  # check_transport refused logins that look like options
            command = shlex.join(["ssh", *(["-p", port] if port else []), login, "true"])
            return (f"set up the board: `{command}` must work without a password (a 'Host "
                    f"{login.split('@')[-1]}' entry in ~/.ssh/config with a key), then {self._install_hint()}")
        if scheme == "adb":
            return f"connect the phone with USB debugging on; `adb devices` must list it ({README_HINT})"
        return README_HINT

    @property
    def target(self) -> dict[str, Any]:
        """What the target said about itself in its hello (connects on first use)."""
        if self._session is None:
            self._connect()
        return self._target  # type: ignore[return-value]

    def fingerprint(self) -> dict[str, Any]:
        return self.backend.fingerprint(self.target, self.device)

    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        return self.backend.host_artifact(model, tuple(input_shape), self.device, self.workdir)

    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        self.target  # noqa: B018 - connect before the first measurement
        try:
            reply = self._session.measure(artifact, self.device, settings)
        except TransportError as error:
            self._drop_session()
            raise HwnasError(f"device '{self.device.name}': lost the connection to {self.device.transport} "
                             f"({error}); rows measured so far are saved, rerun the same command to resume") from None
        except AgentError as error:
            raise HwnasError(f"device '{self.device.name}': the target could not measure "
                             f"{artifact.path.name} ({error})") from None
        artifact.meta.update({k: v for k, v in (reply.get("meta") or {}).items() if k not in RUN_FACTS})
        samples = reply.get("samples_ms")
        return Timing.from_samples(samples) if samples else Timing.from_dict(reply["timing"])

    def _drop_session(self) -> None:
        if self._session is not None:
            self._session.close()
        self._session = None

    def close(self) -> None:
        self._drop_session()
        super().close()
