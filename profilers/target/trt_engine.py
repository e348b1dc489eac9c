"""TensorRT without torch: ONNX -> engine with the builder (fp32/fp16/int8), an engine cache, CUDA-event timing.

Used by the agent on a board (where only TensorRT, cuda-python and numpy are installed) and by the in-process
TensorRT profiler for the engine build. Engines are cached by ONNX hash + TensorRT version + GPU + build settings,
since a build takes seconds to minutes and an engine only runs on the GPU and TensorRT version that built it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__:
    from hwnas.profilers.target.runners import Runner, RunnerError
else:  # shipped to a target beside runners.py
    from runners import Runner, RunnerError  # type: ignore[no-redef]

DEFAULT_WORKSPACE_MB = 1024
DEFAULT_CALIBRATION_BATCHES = 8


def engine_cache_key(onnx_sha256: str, tensorrt_version: str, gpu: str, compute_capability: str, precision: str,
                     workspace_mb: int, calibration: str = "") -> str:
    """The cache key of an engine: everything that makes two builds differ (the calibration id only for int8)."""
    fields = {"onnx": onnx_sha256, "tensorrt": tensorrt_version, "gpu": gpu, "compute_capability": compute_capability,
              "precision": precision, "workspace_mb": int(workspace_mb),
              "calibration": calibration if precision == "int8" else ""}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


class EngineCache:
    """Serialized engines (`KEY.plan`) with their build facts (`KEY.json`) in one folder; writes are atomic."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder).expanduser()

    def get(self, key: str) -> tuple[Path, dict[str, Any]] | None:
        plan, meta = self.folder / f"{key}.plan", self.folder / f"{key}.json"
        if not (plan.is_file() and meta.is_file()):
            return None
        try:
            return plan, json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is rebuilt

    def put(self, key: str, plan: bytes, meta: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{key}.plan"
        for path, data in ((target, plan), (self.folder / f"{key}.json", json.dumps(meta).encode())):
            partial = path.with_name(f"{path.name}.{os.getpid()}.part")
            partial.write_bytes(data)
            partial.replace(path)
        return target


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hwnas" / "tensorrt"


def calibration_batches(shape: Sequence[int], options: dict[str, Any]) -> tuple[list[np.ndarray], str]:
    """Int8 calibration inputs and an id for the cache key: the user's .npy when its shape fits, else random."""
    count = int(options.get("calibration_batches", DEFAULT_CALIBRATION_BATCHES))
    source = options.get("calibration", "random")
    if source != "random":
        data = np.load(Path(source).expanduser()).astype(np.float32)
        if data.ndim == 4 and tuple(data.shape[1:]) == tuple(shape[1:]):
            batch = int(shape[0])
            batches = [data[i:i + batch] for i in range(0, len(data) - batch + 1, batch)][:count]
            if batches:
                return batches, "data:" + hashlib.sha256(data.tobytes()).hexdigest()[:16]
    rng = np.random.default_rng(0)
    return [rng.standard_normal(tuple(shape)).astype(np.float32) for _ in range(count)], f"random:{count}"


# -- CUDA through cuda-python -------------------------------------------------------------------------------
def _cudart():
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.8
    return cudart


def _cuda(result: tuple) -> Any:
    """Unwrap cuda-python's (error, value...) tuples, raising on an error code."""
    error, *values = result
    if error != _cudart().cudaError_t.cudaSuccess:
        raise RunnerError("measure_failed", f"CUDA call failed: {error}")
    return values[0] if len(values) == 1 else tuple(values)


def gpu_info(device: int = 0) -> dict[str, str]:
    """The GPU's name and compute capability, as the fingerprint records them."""
    props = _cuda(_cudart().cudaGetDeviceProperties(device))
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return {"gpu": name.rstrip("\x00").strip(), "compute_capability": f"{props.major}.{props.minor}"}


class _DeviceBuffer:
    def __init__(self, nbytes: int):
        self.nbytes = nbytes
        self.ptr = int(_cuda(_cudart().cudaMalloc(nbytes)))

    def upload(self, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        kind = _cudart().cudaMemcpyKind.cudaMemcpyHostToDevice
        _cuda(_cudart().cudaMemcpy(self.ptr, array.ctypes.data, array.nbytes, kind))

    def free(self) -> None:
        if self.ptr:
            _cuda(_cudart().cudaFree(self.ptr))
            self.ptr = 0


# -- building ---------------------------------------------------------------------------------------------------
def _entropy_calibrator(batches: list[np.ndarray]):
    """TensorRT's entropy calibrator (IInt8EntropyCalibrator2) fed from host arrays."""
    import tensorrt as trt

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self.index = 0
            self.buffer = _DeviceBuffer(batches[0].nbytes)

        def get_batch_size(self) -> int:
            return int(batches[0].shape[0])

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(batches):
                return None
            self.buffer.upload(batches[self.index])
            self.index += 1
            return [self.buffer.ptr]

        def read_calibration_cache(self) -> bytes | None:
            return None

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return EntropyCalibrator()


def build_engine(onnx: bytes, precision: str, workspace_mb: int,
                 calibration: list[np.ndarray] | None = None) -> tuple[bytes, int]:
    """A serialized engine for the ONNX model and its layer count (after TensorRT's fusions)."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise RunnerError("load_failed", f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines fall back to fp16 where int8 has no kernel
    calibrator = None
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator = _entropy_calibrator(calibration or [])
        config.int8_calibrator = calibrator
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.buffer.free()
    if plan is None:
        raise RunnerError("load_failed", f"TensorRT could not build a {precision} engine (see the log above)")
    plan = bytes(plan)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    return plan, int(engine.num_layers)


def plan_for(path: Path, precision: str, options: dict[str, Any], shape: Sequence[int]) -> tuple[Path, dict]:
    """The engine for an artifact: a `.plan` as is, an `.onnx` built (or found in the cache) for this GPU."""
    if path.suffix == ".plan":
        return path, {}
    import tensorrt as trt

    onnx = path.read_bytes()
    workspace = int(options.get("workspace_mb", DEFAULT_WORKSPACE_MB))
    batches, calibration_id = calibration_batches(shape, options) if precision == "int8" else (None, "")
    gpu = gpu_info()
    key = engine_cache_key(hashlib.sha256(onnx).hexdigest(), trt.__version__, gpu["gpu"], gpu["compute_capability"],
                           precision, workspace, calibration_id)
    cache = EngineCache(options.get("engine_cache") or default_cache_dir())
    found = cache.get(key)
    if found:
        return found[0], {**found[1], "engine": "cached"}
    start = time.perf_counter()
    plan, layers = build_engine(onnx, precision, workspace, batches)
    meta = {"layers": layers, "build_s": round(time.perf_counter() - start, 2),
            **({"calibration": calibration_id} if calibration_id else {})}
    return cache.put(key, plan, meta), {**meta, "engine": "built"}


# -- timing -------------------------------------------------------------------------------------------------------
def cuda_python_runner(plan: bytes, shape: Sequence[int]) -> Runner:
    """Device buffers from cuda-python, CUDA events recorded around `execute_async_v3` on one stream."""
    import tensorrt as trt

    cudart = _cudart()
    logger = trt.Logger(trt.Logger.ERROR)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    if engine is None:
        raise RunnerError("load_failed", "TensorRT cannot deserialize this engine (built by another version or GPU?)")
    context = engine.create_execution_context()
    buffers = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        dims = tuple(context.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        buffer = _DeviceBuffer(int(np.prod(dims)) * dtype.itemsize)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            if dims != tuple(shape):
                raise RunnerError("bad_shape", f"engine input '{name}' has shape {list(dims)}, request {list(shape)}")
            buffer.upload(np.random.default_rng(0).standard_normal(dims).astype(dtype))
        context.set_tensor_address(name, buffer.ptr)
        buffers.append(buffer)
    stream = _cuda(cudart.cudaStreamCreate())
    start, end = _cuda(cudart.cudaEventCreate()), _cuda(cudart.cudaEventCreate())

    def run() -> None:
        if not context.execute_async_v3(int(stream)):
            raise RunnerError("measure_failed", "TensorRT execute_async_v3 failed")
        _cuda(cudart.cudaStreamSynchronize(stream))

    def device_ms() -> float:
        _cuda(cudart.cudaEventRecord(start, stream))
        if not context.execute_async_v3(int(stream)):
            raise RunnerError("measure_failed", "TensorRT execute_async_v3 failed")
        _cuda(cudart.cudaEventRecord(end, stream))
        _cuda(cudart.cudaEventSynchronize(end))
        return float(_cuda(cudart.cudaEventElapsedTime(start, end)))

    def release() -> None:
        for buffer in buffers:
            buffer.free()
        for event in (start, end):
            cudart.cudaEventDestroy(event)
        cudart.cudaStreamDestroy(stream)

    return Runner(run, {"layers": int(engine.num_layers)}, release, device_ms)
