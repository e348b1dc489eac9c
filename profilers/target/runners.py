"""Device-side runners: load an artifact in its runtime and time it, with only the runtime and numpy imported.
(Python 3.8+: this file, agent.py and trt_engine.py run on boards with older interpreters, e.g. JetPack 5.)

Shared by the in-process profilers and the agent (`agent.py`), which ships this file to targets that have no
torch and no hwnas. The stopping rule and statistics mirror `hwnas.profilers.base` (tests pin them equal).
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The fields of MeasureSettings with their defaults; a request may give any subset.
SETTINGS_DEFAULTS: dict[str, float] = {"warmup": 10, "warmup_s": 0.05, "min_repeats": 20, "max_repeats": 1000,
                                       "target_ci": 0.02, "budget_s": 3.0}
COMPUTE_UNITS = ("CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE", "ALL")


class RunnerError(Exception):
    """A runtime cannot load or run an artifact; `code` is the agent's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass
class Runner:
    """One loaded artifact. `run()` is one synchronous inference; `call_ms()` times one, by the host clock or,
    where the runtime has them (CUDA events), by the device's own timer."""

    run: Callable[[], object]
    meta: dict[str, Any] = field(default_factory=dict)
    release: Callable[[], None] | None = None  # frees what the runtime holds (device memory, streams)
    device_ms: Callable[[], float] | None = None  # one inference timed on the device, when it can

    def call_ms(self) -> float:
        if self.device_ms is not None:
            return self.device_ms()
        start = time.perf_counter()
        self.run()
        return (time.perf_counter() - start) * 1e3

    def close(self) -> None:
        if self.release is not None:
            self.release()
            self.release = None


# -- the measurement rule (mirrors hwnas.profilers.base.measure_calls) --------------------------------------
def median_relative_ci(sorted_values: Sequence[float], z: float = 1.96) -> float:
    """Distribution-free 95% CI of the median from order statistics, as half-width / median."""
    n = len(sorted_values)
    if n < 5:
        return float("inf")
    half = z * math.sqrt(n) / 2
    low = max(0, int(math.floor(n / 2 - half)))
    high = min(n - 1, int(math.ceil(n / 2 + half)))
    median = float(np.median(sorted_values))
    return float(sorted_values[high] - sorted_values[low]) / 2 / median if median > 0 else float("inf")


def _warm_up(call: Callable[[], object], settings: dict[str, float], clock: Callable[[], float]) -> None:
    """`warmup` calls, then more until `warmup_s` seconds have passed since the start."""
    warm_end = clock() + settings["warmup_s"]
    for _ in range(int(settings["warmup"])):
        call()
    while clock() < warm_end:
        call()


def measure_samples(call_ms: Callable[[], float], settings: dict[str, float],
                    clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Per-call durations (ms) under the adaptive rule: warm up, repeat until the median's CI or a cap."""
    _warm_up(call_ms, settings, clock)
    samples: list[float] = []
    deadline = clock() + settings["budget_s"]
    while True:
        samples.append(call_ms())
        n = len(samples)
        if n < settings["min_repeats"]:
            continue
        if n >= settings["max_repeats"] or clock() > deadline:
            return samples
        if n % 10 == 0 and median_relative_ci(np.sort(samples)) <= settings["target_ci"]:
            return samples


@dataclass
class PairedSamples:
    """Calls of a target, each between two calls of a reference block: the target's samples that count (both
    neighbouring reference calls within the limit), all of them, and the reference's (one more than the target's).
    `relative` and `every_relative` are the same samples over the mean of their two reference neighbours: the
    target's time in units of the reference's, which cancels most of a shared machine's drift."""

    counted: list[float]
    every: list[float]
    reference: list[float]
    relative: list[float]
    every_relative: list[float]


def measure_paired(call_ms: Callable[[], float], reference_ms: Callable[[], float], limit_ms: float,
                   settings: dict[str, float], extra_s: float = 0.0,
                   clock: Callable[[], float] = time.perf_counter) -> PairedSamples:
    """Time `call_ms` call by call, alternating with a reference block; a sample counts when the reference calls on
    both sides of it took at most `limit_ms` (the machine ran at its own speed). Stops by the rule of measure_samples
    applied to the counted relative samples; while fewer than min_repeats count, goes on for up to `extra_s` more
    seconds."""
    _warm_up(lambda: (call_ms(), reference_ms()), settings, clock)
    result = PairedSamples([], [], [reference_ms()], [], [])
    deadline = clock() + settings["budget_s"]
    while True:
        sample, before, after = call_ms(), result.reference[-1], reference_ms()
        relative = 2 * sample / (before + after)
        result.every.append(sample)
        result.every_relative.append(relative)
        if before <= limit_ms and after <= limit_ms:
            result.counted.append(sample)
            result.relative.append(relative)
        result.reference.append(after)
        n, now = len(result.counted), clock()
        if n >= settings["max_repeats"] or now > deadline + extra_s:
            return result
        if n >= settings["min_repeats"] and (now > deadline or (
                n % 10 == 0 and median_relative_ci(np.sort(result.relative)) <= settings["target_ci"])):
            return result


def timing_dict(samples_ms: Sequence[float]) -> dict[str, float]:
    """The Timing fields (median, p10, p90, mean, std, n, rel_ci) of a list of samples."""
    values = np.sort(np.asarray(samples_ms, dtype=float))
    return {"median": float(np.median(values)), "p10": float(np.percentile(values, 10)),
            "p90": float(np.percentile(values, 90)), "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0, "n": len(values),
            "rel_ci": median_relative_ci(values)}


def check_settings(settings: Any) -> dict[str, float]:
    """Settings with defaults filled in; ValueError naming the first bad field."""
    if not isinstance(settings, dict):
        raise ValueError("settings must be an object")
    unknown = sorted(set(settings) - set(SETTINGS_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown setting '{unknown[0]}' (allowed: {', '.join(SETTINGS_DEFAULTS)})")
    merged = {**SETTINGS_DEFAULTS, **settings}
    for key, value in merged.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
            raise ValueError(f"setting '{key}' must be a finite number >= 0, got {value!r}")
    if merged["min_repeats"] < 1 or merged["max_repeats"] < merged["min_repeats"]:
        raise ValueError("settings need 1 <= min_repeats <= max_repeats")
    return merged


# -- the machine ----------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The processor's marketing name, as precise as the platform tells (same rule as hwnas.profilers.base)."""
    if platform.system() == "Linux":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
    if platform.system() == "Darwin" and shutil.which("sysctl"):
        result = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.strip()
    return platform.processor() or platform.machine()


def resolved_threads(threads: int) -> int:
    """0 means every core this process may use."""
    if threads:
        return threads
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def runtime_version(runtime: str) -> str | None:
    """The installed version of a runtime's Python package, or None when it does not import."""
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return onnxruntime.__version__
        if runtime == "tflite":
            return _tflite_interpreter()[1]
        if runtime == "coreml":
            import coremltools

            return coremltools.__version__
        if runtime == "tensorrt":
            import tensorrt

            return tensorrt.__version__
    except ImportError:
        return None
    raise ValueError(f"unknown runtime '{runtime}'")


def target_info(runtime: str, threads: int) -> dict[str, Any]:
    """What the fingerprint needs from the machine that measures: hardware, runtime version, threads used."""
    info: dict[str, Any] = {"cpu": cpu_model(), "machine": platform.machine(), "system": platform.system(),
                            "runtime": runtime, "runtime_version": runtime_version(runtime),
                            "threads": resolved_threads(threads)}
    if runtime == "coreml" and platform.system() == "Darwin":
        info["os_version"] = platform.mac_ver()[0]
    if runtime == "tensorrt" and info["runtime_version"]:
        from_engine = _trt_engine()
        info.update(from_engine.gpu_info())
    return info


# -- loading an artifact ------------------------------------------------------------------------------------
def load_runner(runtime: str, path: Path, input_shape: Sequence[int], threads: int, precision: str,
                options: dict[str, Any]) -> Runner:
    """The artifact at `path` loaded in `runtime`, inputs filled with seeded random data."""
    loaders = {"onnxruntime": _onnxruntime, "tflite": _tflite, "coreml": _coreml, "tensorrt": _tensorrt}
    if runtime not in loaders:
        raise RunnerError("bad_request", f"unknown runtime '{runtime}' (one of {', '.join(loaders)})")
    if runtime_version(runtime) is None:
        raise RunnerError("runtime_missing", f"the {runtime} runtime does not import here")
    try:
        return loaders[runtime](Path(path), tuple(int(d) for d in input_shape), resolved_threads(threads),
                                precision, options)
    except RunnerError:
        raise
    except Exception as error:  # the runtime's own exception types vary; report them as a failed load
        raise RunnerError("load_failed", f"{runtime} cannot load {Path(path).name}: "
                                         f"{type(error).__name__}: {_first_line(error)}") from error


def _random_input(shape: Sequence[int], dtype: Any) -> np.ndarray:
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, size=tuple(shape), dtype=dtype)
    return rng.standard_normal(tuple(shape)).astype(dtype)


def _check_shape(actual: Sequence[int], expected: tuple[int, ...], what: str) -> None:
    """The artifact's input must be the request's NCHW shape, or its NHWC layout."""
    actual = tuple(int(d) for d in actual)
    nhwc = (expected[0], *expected[2:], expected[1]) if len(expected) == 4 else expected
    if actual not in (expected, nhwc):
        raise RunnerError("bad_shape", f"{what} takes input shape {list(actual)}, the request says {list(expected)}")


def _onnxruntime(path: Path, shape: tuple[int, ...], threads: int, precision: str, options: dict) -> Runner:
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = threads
    session_options.inter_op_num_threads = 1
    session_options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    level = ort.GraphOptimizationLevel
    levels = {"all": level.ORT_ENABLE_ALL, "extended": level.ORT_ENABLE_EXTENDED, "basic": level.ORT_ENABLE_BASIC}
    session_options.graph_optimization_level = levels[options.get("optimization", "all")]
    session_options.log_severity_level = 3
    session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    _check_shape(inputs[0].shape, shape, path.name)
    feed = {inputs[0].name: _random_input(shape, np.float32)}
    return Runner(lambda: session.run(None, feed))


def _tflite_interpreter() -> tuple[Any, str]:
    """LiteRT's interpreter (ai-edge-litert), else the older tflite-runtime wheel; with its version string."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter

        return interpreter, f"ai-edge-litert {ai_edge_litert.__version__}"
    except ImportError:
        import tflite_runtime
        from tflite_runtime import interpreter

        return interpreter, f"tflite-runtime {tflite_runtime.__version__}"


def _tflite(path: Path, shape: tuple[int, ...], threads: int, precision: str, options: dict) -> Runner:
    module = _tflite_interpreter()[0]
    kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": threads}
    if not options.get("xnnpack", True):
        kwargs["experimental_op_resolver_type"] = module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = module.Interpreter(**kwargs)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    _check_shape(details[0]["shape"], shape, path.name)
    for detail in details:
        interpreter.set_tensor(detail["index"], _random_input(detail["shape"], detail["dtype"]))
    return Runner(interpreter.invoke)


def _coreml(path: Path, shape: tuple[int, ...], threads: int, precision: str, options: dict) -> Runner:
    if platform.system() != "Darwin":
        raise RunnerError("unsupported", f"Core ML predictions run only on macOS, this is {platform.system()}")
    import coremltools as ct

    units = options.get("compute_units", "ALL")
    if units not in COMPUTE_UNITS:
        raise RunnerError("bad_request", f"compute_units '{units}' is not one of {', '.join(COMPUTE_UNITS)}")
    model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, units))
    described = model.get_spec().description.input[0]
    _check_shape(described.type.multiArrayType.shape, shape, path.name)
    feed = {described.name: _random_input(shape, np.float32)}
    return Runner(lambda: model.predict(feed))


def _trt_engine():
    """The TensorRT helper module: a package sibling in hwnas, a file sibling when shipped to a target."""
    if __package__:
        from hwnas.profilers.target import trt_engine
    else:
        import trt_engine  # type: ignore[no-redef]
    return trt_engine


def _tensorrt(path: Path, shape: tuple[int, ...], threads: int, precision: str, options: dict) -> Runner:
    engine = _trt_engine()
    plan_path, build_meta = engine.plan_for(path, precision, options, shape)
    runner = engine.cuda_python_runner(plan_path.read_bytes(), shape)
    runner.meta.update(build_meta)
    return runner


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else "(no message)"
