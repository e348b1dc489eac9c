"""Export benchmark: per network and format, export time, file size and parity error; then the exported network's
measured latency against the LUT prediction on `cpu` (ONNX Runtime) and `tflite-cpu` (LiteRT, XNNPACK).

The LUT of each device is built here for the networks' blocks (resumable, under OUT's folder `luts/`), so the
prediction and the measurement come from the same machine and settings. Networks are exported untrained (random
weights, BatchNorm statistics settled), which changes nothing for latency, size or conversion time.

    python bench/export.py                 # MobileNetV2, FBNet-C, ProxylessNAS-Mobile, HardCoRe-NAS A at 224 px
    python bench/export.py --quick         # MobileNetV2 at 64 px, ONNX + TFLite fp32 (~1-2 min)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from search_common import provenance

from hwnas.device import get_device
from hwnas.errors import HwnasError
from hwnas.export.fold import fold_batchnorm
from hwnas.export.latency import measure_latency, predict_latency
from hwnas.export.pipeline import ExportRequest, run_export
from hwnas.export.source import build_model, resolve_source
from hwnas.profilers.base import MeasureSettings

NETWORKS = ("mobilenetv2", "fbnet_c", "proxyless_mobile", "hardcorenas_a")
DEVICES = ("cpu", "tflite-cpu")
console = Console(stderr=True)


def build_luts(arch, devices: tuple[str, ...], folder: Path, settings: MeasureSettings) -> dict[str, Any]:
    """Each device's LUT for the network's blocks (appended to, so reruns measure only what is new)."""
    from hwnas.lut.build import build_lut

    found = {}
    for name in devices:
        path = folder / f"{name}-{arch.resolution}.csv"
        try:
            report, _ = build_lut(get_device(name), arch.specs(), path, settings, steadiness=None)
            found[name] = {"lut": path, "measured_blocks": report.measured, "lut_s": report.wall_s}
        except HwnasError as error:  # the runtime is not usable here: say so in the table and the JSON
            found[name] = {"lut": path, "error": str(error)}
    return found


def bench_network(name: str, resolution: int, formats: tuple[str, ...], precisions: tuple[str, ...],
                  devices: tuple[str, ...], out: Path, settings: MeasureSettings) -> dict[str, Any]:
    folder = out.parent / "export-bench" / f"{name}-{resolution}"
    tick = time.perf_counter()
    report = run_export(ExportRequest(arch=name, resolution=resolution, formats=formats, precisions=precisions,
                                      out=folder, fresh=True))
    total_s = time.perf_counter() - tick
    source = resolve_source(arch=name, resolution=resolution)
    model, _ = build_model(source)
    folded = fold_batchnorm(model)
    written = {(a["format"], a["precision"]): folder / a["file"] for a in report.data["artifacts"]}
    latency = []
    for device, lut in build_luts(source.arch, devices, out.parent / "luts", settings).items():
        entry: dict[str, Any] = {"device": device, **{k: str(v) for k, v in lut.items()}}
        if "error" not in lut:
            entry.update(predict_latency(source.arch, device, lut=lut["lut"]))
            try:
                entry["measured"] = measure_latency(device, folded, source.arch, written, lut=lut["lut"])
            except HwnasError as error:
                entry["measure_error"] = str(error)
        latency.append(entry)
    return {"network": name, "resolution": resolution, "export_total_s": total_s,
            "artifacts": [{k: a.get(k) for k in ("format", "precision", "file", "bytes", "export_s", "check_s")}
                          | {"relative_error": (a.get("parity") or {}).get("relative_error"),
                             "parity_skipped": (a.get("parity") or {}).get("skipped")}
                          for a in report.data["artifacts"]],
            "latency": latency, "versions": report.data["versions"]}


def print_tables(results: list[dict[str, Any]]) -> None:
    table = Table("network", "file", "export s", "check s", "size MB", "rel. error", title="export")
    for result in results:
        for a in result["artifacts"]:
            error = "skipped" if a["parity_skipped"] else f"{a['relative_error']:.1e}"
            table.add_row(f"{result['network']}@{result['resolution']}", a["file"].removeprefix("model."),
                          f"{a['export_s']:.1f}",
                          f"{a['check_s']:.1f}", f"{a['bytes'] / 1e6:.2f}", error)
    console.print(table)
    table = Table("network", "device", "timed", "measured ms", "predicted ms", "error %",
                  title="latency (ms per image; predicted = LUT block sum)")
    for result in results:
        for entry in result["latency"]:
            measured = entry.get("measured") or {}
            problem = entry.get("error") or entry.get("measure_error")
            if problem:
                table.add_row(result["network"], entry["device"], problem[:60], "-", "-", "-")
                continue
            error = 100 * (entry["predicted_ms"] - measured["median_ms"]) / measured["median_ms"]
            table.add_row(result["network"], entry["device"], measured["timed"].removeprefix("model."),
                          f"{measured['median_ms']:.3f}",
                          f"{entry['predicted_ms']:.3f}", f"{error:+.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one network at 64 px, ONNX + TFLite fp32")
    parser.add_argument("--networks", default=None, help="comma-separated published names")
    parser.add_argument("--resolution", type=int, default=None)
    parser.add_argument("--formats", default=None, help="default: onnx,tflite,coreml (quick: onnx,tflite)")
    parser.add_argument("--precisions", default=None, help="default: fp32,fp16,int8 (quick: fp32)")
    parser.add_argument("--devices", default=",".join(DEVICES))
    parser.add_argument("--out", type=Path, default=Path("bench/results/export.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    quick = args.quick
    networks = tuple((args.networks or ("mobilenetv2" if quick else ",".join(NETWORKS))).split(","))
    resolution = args.resolution or (64 if quick else 224)
    formats = tuple((args.formats or ("onnx,tflite" if quick else "onnx,tflite,coreml")).split(","))
    precisions = tuple((args.precisions or ("fp32" if quick else "fp32,fp16,int8")).split(","))
    devices = tuple(d for d in args.devices.split(",") if d)
    settings = MeasureSettings(warmup=3, min_repeats=10, max_repeats=200, target_ci=0.05, budget_s=0.5) if quick \
        else MeasureSettings()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for name in networks:
        console.print(f"{name} at {resolution} px: {', '.join(formats)} ({', '.join(precisions)})")
        results.append(bench_network(name, resolution, formats, precisions, devices, args.out, settings))
        args.out.write_text(json.dumps({"quick": quick, "host": platform.node(), "machine": platform.machine(),
                                        "provenance": provenance(), "settings": settings.to_dict(),
                                        "results": results}, indent=2, default=str))
    print_tables(results)
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
