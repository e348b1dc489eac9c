"""Android over adb: parsing TFLite benchmark_model's output and the command line hwnas runs.

No benchmark_model binary can be built or downloaded on this machine, so the texts below are written to the
format the tool documents and prints (its 'count=... first=... curr=... min=... max=... avg=... std=...' statistics
lines, with 'p5=... median=... p95=...' in newer builds, and the 'Inference timings in us: ...' summary), not
captured from a real run.
"""

import math
import shutil

import pytest

from hwnas.device import get_device
from hwnas.errors import RuntimeUnavailable
from hwnas.profilers import get_profiler
from hwnas.profilers.adb import (
    BenchmarkResult,
    benchmark_command,
    parse_benchmark_output,
    parse_probe,
    probe_command,
)
from hwnas.profilers.base import MeasureSettings

NEWER = """\
INFO: STARTING!
INFO: Log parameter values verbosely: [0]
INFO: Num threads: [4]
INFO: Graph: [/data/local/tmp/hwnas/0f3a.tflite]
INFO: Use xnnpack: [1]
INFO: Loaded model /data/local/tmp/hwnas/0f3a.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
INFO: The input model file size (MB): 0.012
INFO: Initialized session in 3.021ms.
INFO: Running benchmark for at least 10 iterations and at least 0.05 seconds but terminate if exceeding 3 seconds.
INFO: count=412 first=310 curr=118 min=109 max=310 avg=121.5 std=14 p5=111 median=119 p95=139

INFO: Running benchmark for at least 20 iterations and at least 1 seconds but terminate if exceeding 3 seconds.
INFO: count=8121 first=121 curr=117 min=108 max=402 avg=122.7 std=9 p5=112 median=120 p95=136

INFO: Inference timings in us: Init: 3021, First inference: 310, Warmup (avg): 121.5, Inference (avg): 122.7
INFO: Memory footprint delta from the start of the tool (MB): init=1.2 overall=2.4
"""

OLDER = """\
STARTING!
Num runs: [50]
Num threads: [4]
Graph: [/data/local/tmp/hwnas/0f3a.tflite]
Loaded model /data/local/tmp/hwnas/0f3a.tflite
Initialized session in 4.5ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=1 curr=2104500

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=1990120 curr=1960300 min=1901000 max=2080700 avg=1.97512e+06 std=40210

Inference timings in us: Init: 4500, First inference: 2104500, Warmup (avg): 2.1045e+06, Inference (avg): 1.97512e+06
"""


def test_newer_output_gives_the_timed_runs_median_in_ms():
    result = parse_benchmark_output(NEWER)
    assert result.count == 8121 and result.median_us == 120 and result.inference_avg_us == 122.7
    timing, meta = result.timing()
    assert timing["median"] == pytest.approx(0.120) and timing["mean"] == pytest.approx(0.1227)
    assert timing["n"] == 8121 and timing["std"] == pytest.approx(0.009) and math.isnan(timing["rel_ci"])
    assert timing["p10"] == pytest.approx(0.112) and timing["p90"] == pytest.approx(0.136)  # its p5 and p95
    assert meta == {"timer": "benchmark_model", "p10_p90": "p5/p95"}


def test_older_output_without_percentiles_uses_the_mean_and_says_so():
    result = parse_benchmark_output(OLDER)
    assert result == BenchmarkResult(init_us=4500, first_us=2104500, warmup_avg_us=2.1045e6,
                                     inference_avg_us=1.97512e6, count=50, std_us=40210, min_us=1901000,
                                     max_us=2080700)
    timing, meta = result.timing()
    assert timing["median"] == pytest.approx(1975.12) and meta["median"] == "avg"


def test_logcat_prefixes_and_carriage_returns_are_tolerated():
    text = "\r\n".join("I tflite  : " + line for line in NEWER.splitlines())
    assert parse_benchmark_output(text).median_us == 120


def test_output_without_the_summary_is_a_clear_error():
    with pytest.raises(ValueError, match="no 'Inference timings in us' line; its last line: ERROR: Failed to"):
        parse_benchmark_output("STARTING!\nERROR: Failed to allocate tensors!\n")


def test_benchmark_command_maps_the_measurement_settings():
    settings = MeasureSettings(warmup=10, warmup_s=0.05, min_repeats=20, budget_s=3.0)
    command = benchmark_command("/data/local/tmp/benchmark_model", "/data/local/tmp/hwnas/a.tflite", 4, True,
                                settings)
    assert command.split() == ["/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/hwnas/a.tflite",
                               "--num_threads=4", "--use_xnnpack=true", "--warmup_runs=10", "--warmup_min_secs=0.05",
                               "--num_runs=20", "--min_secs=1", "--max_secs=3"]


def test_phone_probe_becomes_the_fingerprint_facts():
    answer = ("SM8550\nkalama\nPixel 8\n14\naarch64\n8\n"
              "3f2a9c0d5e6b7a8190ffeeddccbbaa00  /data/local/tmp/benchmark_model\n")
    target = parse_probe(answer, "tflite", 0)
    assert target == {"cpu": "SM8550", "machine": "aarch64", "system": "Android 14", "runtime": "tflite",
                      "runtime_version": "benchmark_model 3f2a9c0d5e6b", "threads": 8, "model": "Pixel 8"}
    older = parse_probe("\nexynos9810\nGalaxy S9\n10\naarch64\n8\nmissing\n", "tflite", 4)
    assert older["cpu"] == "exynos9810" and older["runtime_version"] is None and older["threads"] == 4
    assert "sha256sum /data/local/tmp/benchmark_model" in probe_command("/data/local/tmp/benchmark_model")


@pytest.mark.skipif(shutil.which("adb") is not None, reason="adb is installed here")
def test_phone_without_adb_is_one_line():
    with pytest.raises(RuntimeUnavailable, match=r"device 'pixel': cannot reach adb:// \(the `adb` command is not "
                                                 r"installed") as error:
        with get_profiler(get_device("pixel")) as profiler:
            profiler.fingerprint()
    assert "\n" not in str(error.value)
