"""Android over adb without Python: push the .tflite, run TFLite's `benchmark_model` binary, parse what it prints.

The binary is pushed once by the user (README) to /data/local/tmp/benchmark_model or to the device option
`benchmark_model`. Models go to /data/local/tmp/hwnas/<sha256>.tflite, pushed once. benchmark_model prints
aggregate statistics only (not per-call samples), so `n` is its run count, p10/p90 are its p5/p95 (older binaries:
its min/max; no statistics line: its mean), and the median's CI is unknown (NaN).
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Any

from hwnas.device import Device
from hwnas.profilers.base import Artifact, MeasureSettings
from hwnas.profilers.transports import AgentError, TransportError

DEFAULT_BINARY = "/data/local/tmp/benchmark_model"
REMOTE_DIR = "/data/local/tmp/hwnas"
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"
_SUMMARY = re.compile(rf"Inference timings in us: Init: (?P<init>{_NUMBER}), First inference: (?P<first>{_NUMBER})"
                      rf"(?:, Warmup \(avg\): (?P<warmup>{_NUMBER}))?, Inference \(avg\): (?P<avg>{_NUMBER})")
_STATS = re.compile(rf"count=(?P<count>\d+)(?: first=(?P<first>{_NUMBER}))? curr=(?P<curr>{_NUMBER})"
                    rf"(?: min=(?P<min>{_NUMBER}) max=(?P<max>{_NUMBER}) avg=(?P<avg>{_NUMBER})"
                    rf" std=(?P<std>{_NUMBER}))?"
                    rf"(?: p5=(?P<p5>{_NUMBER}) median=(?P<median>{_NUMBER}) p95=(?P<p95>{_NUMBER}))?")


@dataclass(frozen=True)
class BenchmarkResult:
    """benchmark_model's numbers, in microseconds as it prints them."""

    init_us: float
    first_us: float
    warmup_avg_us: float | None
    inference_avg_us: float
    count: int | None = None  # timed runs; None when the statistics line is missing
    std_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None

    def timing(self) -> tuple[dict[str, float], dict[str, Any]]:
        """Timing fields in milliseconds and the note facts that say where each came from."""
        median = self.median_us if self.median_us is not None else self.inference_avg_us
        if self.p5_us is not None and self.p95_us is not None:
            spread, low, high = "p5/p95", self.p5_us, self.p95_us
        elif self.min_us is not None and self.max_us is not None:
            spread, low, high = "min/max", self.min_us, self.max_us
        else:
            spread, low, high = "avg", self.inference_avg_us, self.inference_avg_us
        timing = {"median": median / 1e3, "p10": low / 1e3, "p90": high / 1e3, "mean": self.inference_avg_us / 1e3,
                  "std": (self.std_us or 0.0) / 1e3, "n": int(self.count or 0), "rel_ci": math.nan}
        meta: dict[str, Any] = {"timer": "benchmark_model", "p10_p90": spread}  # never NaN: ratios use p10
        if self.median_us is None:
            meta["median"] = "avg"  # older binaries print no percentiles
        return timing, meta


def parse_benchmark_output(text: str) -> BenchmarkResult:
    """The timed run's statistics and the 'Inference timings in us' summary from benchmark_model's output."""
    lines = text.replace("\r", "").splitlines()
    summary_index = next((i for i, line in enumerate(lines) if _SUMMARY.search(line)), None)
    if summary_index is None:
        tail = next((line.strip() for line in reversed(lines) if line.strip()), "(no output)")
        raise ValueError(f"benchmark_model printed no 'Inference timings in us' line; its last line: {tail[:200]}")
    summary = _SUMMARY.search(lines[summary_index])
    stats = None
    for line in reversed(lines[:summary_index]):  # the statistics line nearest above the summary is the timed run
        stats = _STATS.search(line)
        if stats:
            break

    def number(match, name: str) -> float | None:
        value = match.group(name) if match else None
        return float(value) if value is not None else None

    return BenchmarkResult(
        init_us=float(summary["init"]), first_us=float(summary["first"]), warmup_avg_us=number(summary, "warmup"),
        inference_avg_us=float(summary["avg"]), count=int(stats["count"]) if stats else None,
        std_us=number(stats, "std"), min_us=number(stats, "min"), max_us=number(stats, "max"),
        p5_us=number(stats, "p5"), median_us=number(stats, "median"), p95_us=number(stats, "p95"))


def benchmark_command(binary: str, graph: str, threads: int, xnnpack: bool, settings: MeasureSettings) -> str:
    """The benchmark_model command line: our warm-up, repeat and time caps mapped onto its flags."""
    return " ".join([
        shlex.quote(binary), f"--graph={shlex.quote(graph)}", f"--num_threads={threads}",
        f"--use_xnnpack={'true' if xnnpack else 'false'}", f"--warmup_runs={settings.warmup}",
        f"--warmup_min_secs={settings.warmup_s:g}", f"--num_runs={settings.min_repeats}",
        f"--min_secs={min(settings.budget_s, 1.0):g}", f"--max_secs={settings.budget_s:g}"])


def probe_command(binary: str) -> str:
    """One `adb shell` line printing what the fingerprint needs, one fact per line."""
    return ("getprop ro.soc.model; getprop ro.board.platform; getprop ro.product.model; "
            f"getprop ro.build.version.release; uname -m; nproc; sha256sum {shlex.quote(binary)} 2>/dev/null"
            " || echo missing")


def parse_probe(output: str, runtime: str, threads: int) -> dict[str, Any]:
    """The phone's answer to `probe_command` as the target facts of a fingerprint (runtime_version None when the
    benchmark_model binary is missing)."""
    soc, board, model, release, machine, cores, binary = ([line.strip() for line in output.splitlines()]
                                                          + [""] * 7)[:7]
    present = bool(binary) and binary != "missing"
    return {"cpu": soc or board, "machine": machine, "system": f"Android {release}", "runtime": runtime,
            "runtime_version": f"benchmark_model {binary.split()[0][:12]}" if present else None,
            "threads": threads or int(cores or 1), "model": model}


def _adb_failed(output: str) -> bool:
    """adb itself failed (no device, offline, unauthorized), as opposed to the command it ran on the phone."""
    return bool(re.search(r"^(adb: |error: (device|no devices|more than one))", output, re.MULTILINE))


class AdbSession:
    """One phone reached with `adb [-s SERIAL]`; the same hello/measure/close face as an agent session."""

    def __init__(self, serial: str, device: Device):
        self.prefix = ["adb", *(["-s", serial] if serial else [])]
        self.binary = str(device.options.get("benchmark_model", DEFAULT_BINARY))
        self.threads = device.threads
        self._present: set[str] = set()

    def _adb(self, *args: str, timeout: float = 60.0, check: bool = True) -> str:
        try:
            result = subprocess.run([*self.prefix, *args], capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise TransportError("the `adb` command is not installed here (Android SDK platform-tools)") from None
        except subprocess.TimeoutExpired:
            raise TransportError(f"`adb {args[0]}` did not finish within {timeout:.0f} s") from None
        output = result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")
        if result.returncode != 0 and (check or _adb_failed(output)):
            said = output.strip().splitlines()
            raise TransportError(said[-1][:300] if said else f"adb exit status {result.returncode}")
        return output

    def hello(self, runtime: str, threads: int) -> dict[str, Any]:
        target = parse_probe(self._adb("shell", probe_command(self.binary)), runtime, threads)
        self.threads = target["threads"]
        return target

    def measure(self, artifact: Artifact, device: Device, settings: MeasureSettings) -> dict[str, Any]:
        data = artifact.path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        remote = f"{REMOTE_DIR}/{sha}.tflite"
        if sha not in self._present:
            if "present" not in self._adb("shell", f"test -f {remote} && echo present || true"):
                self._adb("shell", f"mkdir -p {REMOTE_DIR}")
                self._adb("push", str(artifact.path), remote, timeout=60 + len(data) / 1e6)
            self._present.add(sha)
        command = benchmark_command(self.binary, remote, self.threads, bool(device.options.get("xnnpack", True)),
                                    settings)
        output = self._adb("shell", command, timeout=120 + 4 * settings.budget_s, check=False)
        try:
            timing, meta = parse_benchmark_output(output).timing()
        except ValueError as error:
            raise AgentError("measure_failed", str(error)) from None
        return {"timing": timing, "meta": meta}

    def close(self) -> None:
        return None
