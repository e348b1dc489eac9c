"""The face every profiler shows: compile a block to the runtime's artifact, time it, describe the machine.

Measurement method (DESIGN.md): fixed threads; warm-up; repeats until the median's relative 95% confidence
interval is under a target, or a repeat or time cap is hit; the median is the figure.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch import nn

from hwnas.device import Device


@dataclass(frozen=True)
class Timing:
    """Latency statistics in milliseconds per inference call (batch as set by the device)."""

    median: float
    p10: float
    p90: float
    mean: float
    std: float
    n: int
    rel_ci: float = float("nan")  # half-width of the median's 95% CI over the median

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float]) -> Timing:
        values = np.sort(np.asarray(samples_ms, dtype=float))
        return cls(
            median=float(np.median(values)),
            p10=float(np.percentile(values, 10)),
            p90=float(np.percentile(values, 90)),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            n=len(values),
            rel_ci=median_relative_ci(values),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timing:
        return cls(**{k: data[k] for k in ("median", "p10", "p90", "mean", "std", "n")},
                   rel_ci=data.get("rel_ci", float("nan")))

    def per_image(self, batch: int) -> Timing:
        """The same statistics divided by the batch size (the LUT's unit is milliseconds per image)."""
        if batch == 1:
            return self
        return Timing(self.median / batch, self.p10 / batch, self.p90 / batch, self.mean / batch,
                      self.std / batch, self.n, self.rel_ci)


def median_relative_ci(sorted_values: np.ndarray, z: float = 1.96) -> float:
    """Distribution-free 95% CI of the median from order statistics, as half-width / median."""
    n = len(sorted_values)
    if n < 5:
        return float("inf")
    half = z * math.sqrt(n) / 2
    low = max(0, int(math.floor(n / 2 - half)))
    high = min(n - 1, int(math.ceil(n / 2 + half)))
    median = float(np.median(sorted_values))
    return float(sorted_values[high] - sorted_values[low]) / 2 / median if median > 0 else float("inf")


@dataclass(frozen=True)
class MeasureSettings:
    """How hard to measure one artifact."""

    warmup: int = 10  # calls before timing starts (also at least warmup_s seconds)
    warmup_s: float = 0.05
    min_repeats: int = 20
    max_repeats: int = 1000  # the cap on timed calls
    target_ci: float = 0.02  # stop once the median's relative 95% CI half-width is below this
    budget_s: float = 3.0  # stop timing one artifact after this many seconds regardless

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_calls(run: Callable[[], object], settings: MeasureSettings,
                  clock: Callable[[], float] = time.perf_counter) -> Timing:
    """Time `run()` per call under the adaptive stopping rule; returns milliseconds."""
    warm_end = clock() + settings.warmup_s
    for _ in range(settings.warmup):
        run()
    while clock() < warm_end:
        run()
    samples: list[float] = []
    deadline = clock() + settings.budget_s
    while True:
        start = clock()
        run()
        end = clock()
        samples.append((end - start) * 1e3)
        n = len(samples)
        if n < settings.min_repeats:
            continue
        if n >= settings.max_repeats or end > deadline:
            break
        if n % 10 == 0 and median_relative_ci(np.sort(samples)) <= settings.target_ci:
            break
    return Timing.from_samples(samples)


@dataclass(frozen=True)
class Artifact:
    """A compiled block or network: a file the runtime loads (or, for eager PyTorch, the module itself)."""

    path: Path | None
    format: str  # onnx | tflite | mlpackage | plan | torch
    input_shape: tuple[int, ...]
    meta: dict[str, Any] = field(default_factory=dict)
    payload: Any = None  # in-process object for runtimes without a file format

    def digest(self) -> str:
        """Content hash of the artifact file (directories such as .mlpackage hashed file by file)."""
        if self.path is None:
            return ""
        return file_digest(self.path)


def file_digest(path: Path) -> str:
    sha = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        sha.update(str(file.relative_to(path)).encode() if path.is_dir() else b"")
        sha.update(file.read_bytes())
    return sha.hexdigest()


def cpu_model() -> str:
    """The processor's marketing name, as precise as the platform tells."""
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


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of a fingerprint dict; rows with different ids are not comparable."""
    return hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]


class Profiler(ABC):
    """One runtime's measurement: `compile` a module to an artifact, `time` the artifact."""

    runtime: ClassVar[str]
    extra: ClassVar[str] = ""  # the pip extra that installs this runtime, for error messages

    def __init__(self, device: Device, workdir: str | Path | None = None):
        self.device = device
        self._owns_workdir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="hwnas-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def available(cls) -> bool:
        """The runtime imports and its hardware is present."""
        return cls.unavailable_reason() is None

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """None when usable here, else one line: what is missing and how to get it."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """What makes measurements comparable: hardware, runtime and version, precision, threads, batch."""

    @abstractmethod
    def compile(self, model: nn.Module, input_shape: tuple[int, ...]) -> Artifact:
        """The runtime's artifact for `model` at a fixed input shape (N, C, H, W)."""

    @abstractmethod
    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        """Latency per call of the artifact, in milliseconds."""

    def measure(self, model: nn.Module, input_shape: tuple[int, ...],
                settings: MeasureSettings = MeasureSettings()) -> tuple[Timing, Artifact]:
        artifact = self.compile(model, input_shape)
        return self.time(artifact, settings), artifact

    def close(self) -> None:
        if self._owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Profiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
