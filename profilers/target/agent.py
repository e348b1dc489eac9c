"""The device agent: measures artifacts on the machine it runs on, speaking JSON lines on stdin and stdout.

Run as `python -m hwnas.profilers.target.agent`, or as `python3 agent.py` from a folder holding agent.py, runners.py and
trt_engine.py (what hwnas copies to an ssh target). It imports only the standard library, numpy and the runtime
a request names: never torch, never the rest of hwnas; it runs on Python 3.8. Options: `--cache DIR`
(content-addressed artifacts and TensorRT engines, default ~/.cache/hwnas/agent), `--max-request-bytes N`
(default 256 MiB).

Protocol 1. One JSON object per line each way; a request's optional "id" is echoed in its reply. Replies carry
"ok": true, or "ok": false with "error": {"code", "message", "field"?}. The agent answers every line, malformed
ones included (a request nests at most 32 levels, its integers have at most 64 digits), and only stops at end of
input or "bye".

    hello    {"op":"hello", "runtime"?, "threads"?}
             -> {"protocol", "python", "numpy", "hardware":{cpu,machine,system}, "runtimes":{name: version|null},
                 "target": {cpu,..,runtime_version,threads,[gpu,compute_capability]} (when "runtime" is given),
                 "cache", "max_request_bytes"}
    has      {"op":"has", "sha256", "format"}                -> {"present": bool}
    put      {"op":"put", "sha256", "format", "data_b64"}    -> {"path", "stored": bool}
    measure  {"op":"measure", "runtime", "artifact": {"sha256", "format", and "data_b64" | "path" | neither when
              already put}, "input_shape": [N,C,H,W], "threads"?, "precision"?, "options"?, "settings"?}
             -> {"timing": {median,p10,p90,mean,std,n,rel_ci} (ms per call), "samples_ms": [...], "meta": {...}}
    bye      {"op":"bye"}                                    -> {} and the agent exits

Formats: onnx, tflite, plan (TensorRT engine), mlpackage (sent as a zip of the package folder, which may unpack
to at most 100 times its size and 4 times --max-request-bytes). An artifact given by "path" must be a regular file
(an mlpackage: a folder with Manifest.json), never a folder, device or fifo. An artifact's bytes are checked
against its sha256 and its format's signature before any runtime sees them. Error codes:
invalid_json, bad_request, unknown_op, too_large, hash_mismatch, not_found, bad_artifact, runtime_missing,
load_failed, bad_shape, unsupported, measure_failed, internal.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import io
import json
import os
import platform
import shutil
import stat
import sys
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

if __package__:
    from hwnas.profilers.target import runners
else:  # run as a file shipped beside runners.py
    import runners  # type: ignore[no-redef]

PROTOCOL = 1
DEFAULT_MAX_REQUEST_BYTES = 256 << 20
FORMATS = {"onnx": ".onnx", "tflite": ".tflite", "plan": ".plan", "mlpackage": ".mlpackage"}
RUNTIME_FORMATS = {"onnxruntime": ("onnx",), "tflite": ("tflite",), "coreml": ("mlpackage",),
                   "tensorrt": ("onnx", "plan")}
PRECISIONS = ("fp32", "fp16", "int8")
MAX_DEPTH = 32  # nesting levels of a request (real ones have 3): deeper lines would exhaust the parser's stack
MAX_INT_DIGITS = 64  # digits of an integer in a request: longer ones cost quadratic time or fail to convert
MAX_EXPANSION = 100  # an mlpackage zip unpacks to at most this many times its size (random weights barely shrink)
MAX_ZIP_MEMBERS = 10000  # files in an mlpackage zip (a real package has a handful)


class RequestError(Exception):
    """A request the agent refuses: becomes {"ok": false, "error": {...}}."""

    def __init__(self, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, **({"field": self.field} if self.field else {})}


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas" / "agent"


def path_digest(path: Path) -> str:
    """sha256 of a file, or of a folder file by file (the same rule as hwnas.profilers.base.file_digest)."""
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        sha.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        with file.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                sha.update(chunk)
    return sha.hexdigest()


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise RequestError("invalid_json", f"an integer of {len(text.lstrip('-'))} digits (at most "
                                           f"{MAX_INT_DIGITS})")
    return int(text)


def parse_request(line: bytes) -> Any:
    """A request line as JSON, refusing (RequestError, never a crash) deep nesting and huge integers."""
    too_deep = RequestError("invalid_json", f"a request nests at most {MAX_DEPTH} levels")
    try:
        value = json.loads(line, parse_int=_bounded_int)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise RequestError("invalid_json", f"not a JSON line ({error})") from None
    except RecursionError:  # deeper than the interpreter's own limit
        raise too_deep from None
    stack = [(value, 1)]
    while stack:  # iterative, so the check cannot itself recurse too deep
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise too_deep
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return value


def _require(request: dict, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
    if key not in request:
        if default is not None:
            return default
        raise RequestError("bad_request", f"missing field '{key}'", key)
    value = request[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RequestError("bad_request", f"field '{key}' must be {name}, got {type(value).__name__}", key)
    return value


def _check_signature(data: bytes, fmt: str) -> None:
    """Cheap structural checks so a truncated or mislabelled file never reaches a runtime."""
    if fmt == "tflite" and data[4:8] != b"TFL3":
        raise RequestError("bad_artifact", "not a TFLite flatbuffer (no TFL3 identifier)", "artifact")
    if fmt == "onnx" and data[:1] != b"\x08":
        raise RequestError("bad_artifact", "not an ONNX model (does not start with ir_version)", "artifact")
    if fmt == "plan" and not data:
        raise RequestError("bad_artifact", "empty TensorRT engine", "artifact")


class Agent:
    """The request handler; `serve` runs the line loop."""

    def __init__(self, cache: Path, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES):
        self.cache = Path(cache).expanduser()
        self.max_request_bytes = max_request_bytes

    # -- the loop ---------------------------------------------------------------------------------------------
    def serve(self, reader: BinaryIO, writer: BinaryIO) -> None:
        while True:
            line = reader.readline(self.max_request_bytes + 1)
            if not line:
                return
            if len(line) > self.max_request_bytes:
                while line and not line.endswith(b"\n"):  # drop the rest of the oversized line
                    line = reader.readline(1 << 20)
                reply = self._error(RequestError("too_large", f"request longer than {self.max_request_bytes} "
                                                              "bytes (raise --max-request-bytes)"))
            else:
                reply = self.handle(line)
            writer.write(self._encode(reply))
            writer.flush()
            if reply.get("op") == "bye":
                return

    def handle(self, line: bytes) -> dict[str, Any]:
        """One request line -> one reply; never raises."""
        ident = None
        try:
            request = parse_request(line)
            ident = request.get("id") if isinstance(request, dict) else None
            if not isinstance(request, dict):
                raise RequestError("bad_request", "a request is a JSON object")
            op = _require(request, "op", str)
            handler = {"hello": self.hello, "has": self.has, "put": self.put, "measure": self.measure,
                       "bye": lambda _: {}}.get(op)
            if handler is None:
                raise RequestError("unknown_op", f"unknown op '{op}' (hello, has, put, measure, bye)", "op")
            reply = {"ok": True, "op": op, **handler(request)}
        except RequestError as error:
            reply = self._error(error)
        except runners.RunnerError as error:
            reply = self._error(RequestError(error.code, str(error)))
        except Exception as error:  # a bug, a full disk or an unexpected runtime failure must not end the session
            reply = self._error(RequestError("internal", f"{type(error).__name__}: {error}"))
        return {**reply, **({"id": ident} if ident is not None else {})}

    def _encode(self, reply: dict[str, Any]) -> bytes:
        """A reply as one JSON line; one that cannot be encoded (a runtime's odd meta) becomes an internal error."""
        try:
            return json.dumps(reply).encode() + b"\n"
        except Exception as error:
            failed = self._error(RequestError("internal", f"reply is not JSON ({type(error).__name__}: {error})"))
            return json.dumps({**failed, **({"id": reply["id"]} if "id" in reply else {})}).encode() + b"\n"

    @staticmethod
    def _error(error: RequestError) -> dict[str, Any]:
        return {"ok": False, "error": error.to_dict()}

    # -- ops ----------------------------------------------------------------------------------------------------
    def hello(self, request: dict) -> dict[str, Any]:
        runtime = request.get("runtime")
        if runtime is not None and runtime not in RUNTIME_FORMATS:
            raise RequestError("bad_request", f"unknown runtime '{runtime}' ({', '.join(RUNTIME_FORMATS)})", "runtime")
        threads = _require(request, "threads", int, 1)
        probed = [runtime] if runtime else list(RUNTIME_FORMATS)
        reply = {"protocol": PROTOCOL, "python": platform.python_version(), "numpy": np.__version__,
                 "hardware": {"cpu": runners.cpu_model(), "machine": platform.machine(), "system": platform.system()},
                 "runtimes": {name: runners.runtime_version(name) for name in probed},
                 "cache": str(self.cache), "max_request_bytes": self.max_request_bytes}
        if runtime:
            reply["target"] = runners.target_info(runtime, threads)
        return reply

    def has(self, request: dict) -> dict[str, Any]:
        sha, fmt = self._identity(request)
        return {"present": self._stored(sha, fmt).exists()}

    def put(self, request: dict) -> dict[str, Any]:
        sha, fmt = self._identity(request)
        path = self._stored(sha, fmt)
        if path.exists():
            return {"path": str(path), "stored": False}
        self._store(sha, fmt, self._decode(request))
        return {"path": str(path), "stored": True}

    def measure(self, request: dict) -> dict[str, Any]:
        runtime = _require(request, "runtime", str)
        if runtime not in RUNTIME_FORMATS:
            raise RequestError("bad_request", f"unknown runtime '{runtime}' ({', '.join(RUNTIME_FORMATS)})", "runtime")
        shape = _require(request, "input_shape", list)
        if not (1 <= len(shape) <= 6) or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 1 << 16
                                               for d in shape):
            raise RequestError("bad_shape", f"input_shape must be 1-6 positive integers, got {shape}", "input_shape")
        threads = _require(request, "threads", int, 1)
        precision = _require(request, "precision", str, "fp32")
        if threads < 0 or precision not in PRECISIONS:
            raise RequestError("bad_request", f"threads must be >= 0 and precision one of {', '.join(PRECISIONS)}")
        options = dict(_require(request, "options", dict, {}))
        try:
            settings = runners.check_settings(request.get("settings", {}))
        except ValueError as error:
            raise RequestError("bad_request", str(error), "settings") from None
        path, fmt = self._artifact(_require(request, "artifact", dict))
        if fmt not in RUNTIME_FORMATS[runtime]:
            raise RequestError("bad_artifact", f"{runtime} runs {', '.join(RUNTIME_FORMATS[runtime])}, not {fmt}",
                               "artifact")
        if runtime == "tensorrt":
            options["engine_cache"] = str(self.cache / "tensorrt")  # engines belong to this board
        runner = runners.load_runner(runtime, path, shape, threads, precision, options)
        try:
            samples = runners.measure_samples(runner.call_ms, settings)
        except runners.RunnerError:
            raise
        except Exception as error:
            raise RequestError("measure_failed", f"{type(error).__name__}: {error}") from None
        finally:
            runner.close()
        return {"timing": runners.timing_dict(samples), "samples_ms": samples, "meta": runner.meta}

    # -- artifacts ------------------------------------------------------------------------------------------------
    def _identity(self, request: dict) -> tuple[str, str]:
        sha = _require(request, "sha256", str).lower()
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise RequestError("bad_request", "sha256 must be 64 hex digits", "sha256")
        fmt = _require(request, "format", str)
        if fmt not in FORMATS:
            raise RequestError("bad_request", f"unknown format '{fmt}' ({', '.join(FORMATS)})", "format")
        return sha, fmt

    def _stored(self, sha: str, fmt: str) -> Path:
        return self.cache / "artifacts" / f"{sha}{FORMATS[fmt]}"

    @staticmethod
    def _decode(request: dict) -> bytes:
        try:
            return base64.b64decode(_require(request, "data_b64", str), validate=True)
        except binascii.Error as error:
            raise RequestError("bad_request", f"data_b64 is not base64 ({error})", "data_b64") from None

    def _artifact(self, artifact: dict) -> tuple[Path, str]:
        sha, fmt = self._identity(artifact)
        if "path" in artifact:  # a file already on this machine (pushed by scp, adb, ...)
            path = Path(_require(artifact, "path", str)).expanduser()
            _check_local_artifact(path, fmt)
            if path_digest(path) != sha:
                raise RequestError("hash_mismatch", f"{path} does not have sha256 {sha[:12]}...", "artifact.path")
            if fmt != "mlpackage":
                with path.open("rb") as stream:
                    _check_signature(stream.read(8), fmt)
            return path, fmt
        if "data_b64" in artifact:
            stored = self._stored(sha, fmt)
            if not stored.exists():
                self._store(sha, fmt, self._decode(artifact))
            return stored, fmt
        stored = self._stored(sha, fmt)
        if not stored.exists():
            raise RequestError("not_found", f"artifact {sha[:12]}... not in the cache; send it with put first",
                               "artifact")
        return stored, fmt

    def _store(self, sha: str, fmt: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != sha:
            raise RequestError("hash_mismatch", f"received bytes do not hash to {sha[:12]}...", "data_b64")
        target = self._stored(sha, fmt)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.part")
        try:
            if fmt == "mlpackage":
                _extract_package(data, partial, min(MAX_EXPANSION * len(data), 4 * self.max_request_bytes))
            else:
                _check_signature(data, fmt)
                partial.write_bytes(data)
            os.replace(partial, target)
        finally:
            if partial.is_dir():
                shutil.rmtree(partial, ignore_errors=True)
            elif partial.exists():
                partial.unlink()


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a fifo"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a regular file"))


def _check_local_artifact(path: Path, fmt: str) -> None:
    """A path artifact is a regular file (an mlpackage: a folder with Manifest.json); a directory, device or fifo
    is refused before hashing, which would take long, block or never end."""
    try:
        mode = path.stat().st_mode
    except OSError:
        raise RequestError("not_found", f"no artifact at {path}", "artifact.path") from None
    if fmt == "mlpackage":
        if stat.S_ISDIR(mode) and (path / "Manifest.json").is_file():
            return
        expected = "an .mlpackage folder with Manifest.json"
    elif stat.S_ISREG(mode):
        return
    else:
        expected = f"a regular {fmt} file"
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    raise RequestError("bad_artifact", f"{path} is {kind}, expected {expected}", "artifact.path")


def _extract_package(data: bytes, folder: Path, limit: int) -> None:
    """Unzip an .mlpackage sent as a zip, refusing members that would land outside the folder and archives that
    unpack to more than `limit` bytes (zipfile never writes more than a member's declared size)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise RequestError("bad_artifact", "an mlpackage is sent as a zip archive; this is not one",
                           "artifact") from None
    members = archive.infolist()
    names = [member.filename for member in members]
    if "Manifest.json" not in names:
        raise RequestError("bad_artifact", "zip has no Manifest.json at its root: not an .mlpackage", "artifact")
    if any(name.startswith("/") or ".." in Path(name).parts for name in names):
        raise RequestError("bad_artifact", "zip member paths leave the package folder", "artifact")
    size = sum(member.file_size for member in members)
    if len(members) > MAX_ZIP_MEMBERS or size > limit:
        raise RequestError("too_large", f"zip of {len(data)} bytes unpacks to {size} bytes in {len(members)} files "
                                        f"(at most {limit} bytes, {MAX_ZIP_MEMBERS} files)", "artifact")
    shutil.rmtree(folder, ignore_errors=True)
    try:
        archive.extractall(folder)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise RequestError("bad_artifact", f"corrupt zip ({error})", "artifact") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hwnas-agent", description="hwnas device agent (JSON lines on stdio)")
    parser.add_argument("--cache", type=Path, default=None, help="artifact and engine cache folder")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES)
    args = parser.parse_args(argv)
    protocol_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # runtimes that print to fd 1 must not corrupt the protocol
    sys.stdout = sys.stderr
    Agent(args.cache or default_cache(), args.max_request_bytes).serve(sys.stdin.buffer, protocol_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
