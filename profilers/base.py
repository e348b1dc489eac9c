"""The face every profiler shows: compile a block to the runtime's artifact, time it, describe the machine.

Measurement method (DESIGN.md): fixed threads; warm-up; repeats until the median's relative 95% confidence
interval is under a target, or a repeat or time cap is hit; the median is the figure.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hwnas.device import Device
from hwnas.errors import HwnasError
from hwnas.profilers.options import check_options
from hwnas.profilers.target import runners
from hwnas.profilers.target.runners import cpu_model, measure_samples, median_relative_ci, resolved_threads, timing_dict

if TYPE_CHECKING:
    from torch import nn

__all__ = ["Artifact", "MeasureSettings", "Profiler", "RunnerProfiler", "Timing", "cpu_model", "file_digest",
           "fingerprint_id", "measure_calls", "median_relative_ci", "resolved_threads", "time_runner"]


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
        return cls(**timing_dict(samples_ms))

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
    """Time `run()` per call under the adaptive stopping rule (the one the device agent uses); milliseconds."""

    def call_ms() -> float:
        start = clock()
        run()
        return (clock() - start) * 1e3

    return Timing.from_samples(measure_samples(call_ms, settings.to_dict(), clock))


def time_runner(runner: runners.Runner, settings: MeasureSettings) -> Timing:
    """A loaded artifact timed call by call under the adaptive rule, then released."""
    try:
        return Timing.from_samples(measure_samples(runner.call_ms, settings.to_dict()))
    finally:
        runner.close()


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


def fingerprint_id(fingerprint: dict[str, Any]) -> str:
    """Short stable hash of a fingerprint dict; rows with different ids are not comparable."""
    return hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]


WORKDIR_PREFIX = "hwnas-"  # work folders are TMPDIR/hwnas-PID-XXXX: the owner's pid tells a stale one apart


def make_workdir() -> Path:
    """A fresh work folder named after this process, once stale folders of dead processes are removed and SIGTERM
    is made to unwind (so the folder goes with the process)."""
    remove_stale_workdirs()
    exit_on_sigterm()
    return Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-"))


def remove_workdir(path: Path, owner: int) -> None:
    """Remove a work folder in the process that made it (a forked child exiting leaves its parent's alone)."""
    if os.getpid() == owner:
        shutil.rmtree(path, ignore_errors=True)


def _running(pid: int) -> bool:
    """Whether process `pid` exists (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_workdirs(folder: str | Path | None = None) -> list[Path]:
    """Remove work folders whose process no longer runs (killed with SIGKILL, which no cleanup survives)."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*-*"):
        match = re.fullmatch(rf"{WORKDIR_PREFIX}(\d+)-\w+", path.name)
        if match and path.is_dir() and not _running(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _raise_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit (exit status 143) so `finally` blocks and exit handlers remove work folders;
    only from the main thread and where SIGTERM still has its default action (an application's own handler stays)."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_exit)


class Profiler(ABC):
    """One runtime's measurement: `compile` a module to an artifact, `time` the artifact."""

    runtime: ClassVar[str]
    extra: ClassVar[str] = ""  # the pip extra that installs this runtime, for error messages

    def __init__(self, device: Device, workdir: str | Path | None = None):
        self.device = device
        self.workdir = make_workdir() if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # a folder of its own goes with close(), else when collected or at interpreter exit (after an exception,
        # Ctrl-C or SIGTERM too); a SIGKILLed one is removed by the next process's make_workdir
        self._remove_workdir = None if workdir is not None else \
            weakref.finalize(self, remove_workdir, self.workdir, os.getpid())

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

    def open(self, artifact: Artifact) -> runners.Runner | None:
        """The artifact loaded for call-by-call timing in this process (close it after), or None where calls are
        timed elsewhere (a remote agent): steady-machine checks then fall back to whole timings (lut/steady.py)."""
        return None

    def measure(self, model: nn.Module, input_shape: tuple[int, ...],
                settings: MeasureSettings = MeasureSettings()) -> tuple[Timing, Artifact]:
        artifact = self.compile(model, input_shape)
        return self.time(artifact, settings), artifact

    def close(self) -> None:
        if self._remove_workdir is not None:
            self._remove_workdir()

    def __enter__(self) -> Profiler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RunnerProfiler(Profiler):
    """A profiler timed by its runtime's runner in runners.py: the loop the remote agent runs, so both measure alike.
    Its device `options:` are checked against the runtime's allowed set (options.py)."""

    def __init__(self, device: Device, workdir: str | Path | None = None):
        check_options(device)
        super().__init__(device, workdir)

    def open(self, artifact: Artifact) -> runners.Runner:
        try:
            return runners.load_runner(self.runtime, artifact.path, artifact.input_shape, self.device.threads,
                                       self.device.precision, self.device.options)
        except runners.RunnerError as error:
            raise HwnasError(f"device '{self.device.name}': {error}") from None

    def time(self, artifact: Artifact, settings: MeasureSettings = MeasureSettings()) -> Timing:
        return time_runner(self.open(artifact), settings)
