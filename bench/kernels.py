"""Mixed-op kernels against their PyTorch references, per kernel and per supernet training step.

Per kernel, at the shapes of the FBNet and ProxylessNAS spaces (batch 64, 224 px): forward+backward time, peak
memory, memory held between forward and backward (what the kernel saves, plus its output), and the achieved
memory bandwidth (the fused algorithm's minimum traffic / time) against the GPU's peak, for every implementation
that covers the call (reference, folded, triton, cuda). Then one supernet training step per space and mixing mode
with HWNAS_KERNELS=reference vs auto (vs triton). Without CUDA it says so and exits; `--quick` on the CPU runs a
tiny sanity pass instead (parity and timings of the interpreted kernels, which say nothing about GPU speed).

    python bench/kernels.py                    # on a GPU: full tables, JSON to bench/results/kernels.json
    python bench/kernels.py --quick            # GPU: two positions per space; CPU: the sanity pass (~1 min)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table
from search_common import provenance

from hwnas.kernels.dispatch import forward_backward, implementations
from hwnas.kernels.parity import parity
from hwnas.ops import make_divisible
from hwnas.spaces.catalog import get_space

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
PEAK_GBPS = {"H100 SXM": 3350, "H100 80GB HBM3": 3350, "H100 PCIe": 2039, "H100 NVL": 3900, "H200": 4800,
             "A100-SXM4-80GB": 2039, "A100-SXM4-40GB": 1555, "A100-PCIE-40GB": 1555, "A100 80GB PCIe": 1935,
             "L4": 300, "A10": 600, "L40S": 864, "RTX 4090": 1008}


@dataclass(frozen=True)
class Case:
    """One kernel call: which op, where it comes from, its arguments, and its minimum memory traffic (bytes)."""

    op: str
    label: str
    args: tuple
    traffic: int


def peak_bandwidth_gbps(device: torch.device, override: float | None) -> float | None:
    """The GPU's peak DRAM bandwidth: --peak-gbps, else from its memory clock and bus, else a table by name."""
    if override:
        return override
    props = torch.cuda.get_device_properties(device)
    clock_khz, bus_bits = getattr(props, "memory_clock_rate", 0), getattr(props, "memory_bus_width", 0)
    if clock_khz and bus_bits:
        return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    return next((gbps for name, gbps in PEAK_GBPS.items() if name in props.name), None)


def _randn(shape, generator, device, dtype, grad=True) -> torch.Tensor:
    return torch.randn(shape, generator=generator).to(device, dtype).requires_grad_(grad)


def _probs(shape, generator, device) -> torch.Tensor:
    return torch.softmax(torch.randn(shape, generator=generator), -1).to(device).requires_grad_()


def kernel_cases(space_name: str, batch: int, resolution: int, dtype: torch.dtype, device: torch.device,
                 positions: int | None) -> list[Case]:
    """The three kernels at the first layer of each stage of a space (the first `positions` stages if given)."""
    space = get_space(space_name, resolution)
    firsts = [stage[0] for stage in space.by_stage()][:positions]
    g = torch.Generator().manual_seed(0)
    size = torch.tensor([], dtype=dtype).element_size()
    cases = []
    for p in firsts:
        oh, ow = (p.h - 1) // p.stride + 1, (p.w - 1) // p.stride + 1
        blocks = [op for op in p.candidates if op.kind == "ir"]
        mid = max(make_divisible(p.cin * op.expansion) for op in blocks)
        sizes = sorted({op.kernel for op in blocks})
        where = f"{space_name} L{p.index} {p.cin}>{p.cout} {p.h}px s{p.stride}"
        k, out_elems = len(p.candidates), batch * p.cout * oh * ow
        outputs = [_randn((batch, p.cout, oh, ow), g, device, dtype) for _ in range(k)]
        for mode, weights in (("softmax (K,)", _probs(k, g, device)), ("gumbel (N,K)", _probs((batch, k), g, device)),
                              ("masked 2 of K", torch.tensor([0.6, 0.4] + [0.0] * (k - 2), device=device))):
            cases.append(Case("mixed_sum", f"{where} K={k} {mode}", (outputs, weights), (3 * k + 2) * out_elems * size))
        x = _randn((batch, mid, p.h, p.w), g, device, dtype)
        superkernel = _randn((mid, 1, sizes[-1], sizes[-1]), g, device, dtype)
        dw_traffic = 3 * (x.numel() + batch * mid * oh * ow) * size
        for mode, arch in (("(K,)", _probs(len(sizes), g, device)), ("(N,K)", _probs((batch, len(sizes)), g, device))):
            cases.append(Case("mixed_depthwise", f"{where} C={mid} k{'/'.join(map(str, sizes))} {mode}",
                              (x, superkernel, arch, tuple(sizes), None, p.stride), dw_traffic))
        h = _randn((batch, mid, oh, ow), g, device, dtype)
        weight = _randn((p.cout, mid), g, device, dtype)
        widths = sorted({make_divisible(p.cin * op.expansion) for op in blocks})
        width_masks = torch.stack([(torch.arange(mid) < w_).float() for w_ in widths])
        pw_traffic = (4 * h.numel() + 3 * batch * p.cout * oh * ow) * size
        for mode, share in (("(C,)", torch.softmax(torch.randn(len(widths), generator=g), -1)),
                            ("(N,C)", torch.softmax(torch.randn(batch, len(widths), generator=g), -1))):
            mask = (share @ width_masks).to(device, dtype).requires_grad_()
            cases.append(Case("masked_pointwise", f"{where} {mid}>{p.cout} widths {widths} mask {mode}",
                              (h, weight, mask, None), pw_traffic))
    return cases


def tiny_cases(dtype: torch.dtype) -> list[Case]:
    """CPU sanity pass: one small call per kernel and weight mode (the Triton interpreter is slow)."""
    g = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    outputs = [_randn((2, 8, 8, 8), g, cpu, dtype) for _ in range(4)]
    x, superkernel = _randn((2, 4, 7, 6), g, cpu, dtype), _randn((4, 1, 5, 5), g, cpu, dtype)
    h, weight = _randn((2, 24, 8, 8), g, cpu, dtype), _randn((16, 24), g, cpu, dtype)
    mask = (torch.arange(24) < 16).to(dtype) * 0.7
    return [
        Case("mixed_sum", "2x8x8x8 K=4 (K,)", (outputs, _probs(4, g, cpu)), 14 * 1024 * 4),
        Case("mixed_sum", "2x8x8x8 K=4 (N,K)", (outputs, _probs((2, 4), g, cpu)), 14 * 1024 * 4),
        Case("mixed_depthwise", "2x4x7x6 k3/5 s2 (K,)", (x, superkernel, _probs(2, g, cpu), (3, 5), None, 2), 0),
        Case("mixed_depthwise", "2x4x7x6 k3/5 (N,K)", (x, superkernel, _probs((2, 2), g, cpu), (3, 5), None, 1), 0),
        Case("masked_pointwise", "2x24x8x8 > 16 (C,)", (h, weight, mask.requires_grad_(), None), 0),
        Case("masked_pointwise", "2x24x8x8 > 16 (N,C)", (h, weight, mask.repeat(2, 1).requires_grad_(), None), 0),
    ]


def measure(run: Callable[[], Any], device: torch.device, repeats: int) -> dict[str, float | None]:
    """Median time (ms) of `run`, and on a GPU its peak memory (MB)."""
    run()  # warm-up: compiles, and lets the dispatcher time its candidates
    if device.type != "cuda":
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append((time.perf_counter() - start) * 1e3)
        return {"ms": statistics.median(times), "peak_mb": None}
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    torch.cuda.synchronize(device)
    peak_mb = (torch.cuda.max_memory_allocated(device) - base) / 2**20
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"ms": statistics.median(times), "peak_mb": peak_mb}


def held_mb(function: Callable[..., torch.Tensor], args: tuple, device: torch.device) -> float | None:
    """Memory allocated between forward and backward (saved tensors + output), the activation cost."""
    if device.type != "cuda":
        return None
    inputs = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else
              [t.detach().requires_grad_(t.requires_grad) for t in a] if isinstance(a, list) else a for a in args]
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    out = function(*inputs)
    torch.cuda.synchronize(device)
    held = (torch.cuda.memory_allocated(device) - base) / 2**20
    del out
    return held


def bench_kernels(cases: list[Case], device: torch.device, repeats: int, peak_gbps: float | None,
                  record: Callable[[dict], None]) -> None:
    for case in cases:
        found = implementations(case.op, case.args)
        baseline = None
        for name, function in found.items():
            timing = measure(forward_backward(function, case.args), device, repeats)
            checks = parity(function, found["reference"], case.args)
            row = {"kind": "kernel", "op": case.op, "case": case.label, "impl": name, **timing,
                   "held_mb": held_mb(function, case.args, device), "parity_ok": all(c.ok for c in checks),
                   "max_error": max(c.error for c in checks)}
            baseline = baseline or row["ms"]
            row["speedup"] = baseline / row["ms"]
            if case.traffic and device.type == "cuda":
                row["gbps"] = case.traffic / (row["ms"] / 1e3) / 1e9
                row["pct_of_peak"] = 100 * row["gbps"] / peak_gbps if peak_gbps else None
            record(row)


def supernet_step(space_name: str, mode: str, batch: int, resolution: int, device: torch.device,
                  amp: torch.dtype | None) -> tuple[Callable[[], None], Callable[[], torch.Tensor]] | str:
    """(one training step, its forward alone) of the issue-4 supernet, or why it cannot be built here."""
    try:
        from hwnas.supernet import ChainSupernet, Selection
    except ImportError as error:
        return f"pending: the issue-4 supernet is not importable here ({error})"
    space = get_space(space_name, resolution, num_classes=1000)
    net = ChainSupernet(space, masked=mode == "masked").to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, resolution, resolution, generator=g).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=g).to(device)
    alphas = [torch.zeros(len(layer), device=device, requires_grad=True) for layer in net.layers]

    def selections() -> list:
        if mode == "gumbel":  # FBNet: a Gumbel-softmax sample per image
            return [Selection(torch.nn.functional.gumbel_softmax(a.expand(batch, -1), tau=1.0)) for a in alphas]
        if mode == "two-paths":  # ProxylessNAS: two sampled paths per layer
            return [Selection(torch.softmax(a, -1), (0, len(a) - 2)) for a in alphas]
        return [Selection(torch.softmax(a, -1)) for a in alphas]  # all paths, or the weight-sharing masks

    def forward() -> torch.Tensor:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            return torch.nn.functional.cross_entropy(net(images, selections()), labels)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        optimizer.step()

    return step, forward


def bench_supernet(spaces: list[str], modes: list[str], kernel_modes: list[str], batch: int, resolution: int,
                   device: torch.device, amp: torch.dtype | None, repeats: int,
                   record: Callable[[dict], None]) -> None:
    for space_name in spaces:
        for mode in modes:
            baseline = None
            for kernel_mode in kernel_modes:
                os.environ["HWNAS_KERNELS"] = kernel_mode
                row = {"kind": "supernet", "op": "train step", "case": f"{space_name} {mode} b{batch} {resolution}px",
                       "impl": kernel_mode}
                try:
                    built = supernet_step(space_name, mode, batch, resolution, device, amp)
                    if isinstance(built, str):
                        record({**row, "status": built})
                        break
                    step, forward = built
                    row.update(measure(step, device, repeats))
                    if device.type == "cuda":
                        base = torch.cuda.memory_allocated(device)
                        loss = forward()
                        row["held_mb"] = (torch.cuda.memory_allocated(device) - base) / 2**20
                        loss.backward()
                        del loss
                except torch.cuda.OutOfMemoryError:
                    row["status"] = "out of memory"
                baseline = baseline or row.get("ms")
                if row.get("ms") and baseline:
                    row["speedup"] = baseline / row["ms"]
                record(row)
                torch.cuda.empty_cache() if device.type == "cuda" else None
    os.environ.pop("HWNAS_KERNELS", None)


def _fmt(value: Any, spec: str) -> str:
    return "" if value is None else format(value, spec)


def print_table(console: Console, rows: list[dict], title: str) -> None:
    table = Table("op", "case", "impl", "ms (fwd+bwd)", "speedup", "peak MB", "held MB", "GB/s", "% peak",
                  "parity", title=title)
    for r in rows:
        parity_text = "" if "parity_ok" not in r else ("ok" if r["parity_ok"] else "FAIL") + f" {r['max_error']:.1e}"
        table.add_row(r["op"], r["case"], r["impl"], r.get("status") or _fmt(r.get("ms"), ".3f"),
                      _fmt(r.get("speedup"), ".2f"), _fmt(r.get("peak_mb"), ".1f"), _fmt(r.get("held_mb"), ".1f"),
                      _fmt(r.get("gbps"), ".0f"), _fmt(r.get("pct_of_peak"), ".0f"), parity_text)
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="GPU: two positions per space; CPU: sanity pass")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16",
                        help="kernel inputs; the supernet step runs under autocast to it (fp32: no autocast)")
    parser.add_argument("--spaces", nargs="+", default=["fbnet", "proxyless"])
    parser.add_argument("--supernet-modes", nargs="+", default=["all-paths", "gumbel", "two-paths", "masked"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--peak-gbps", type=float, help="the GPU's peak DRAM bandwidth, when it cannot be read")
    parser.add_argument("--out", type=Path, default=Path("bench/results/kernels.json"))
    args = parser.parse_args()
    console = Console(width=None if Console().is_terminal else 200)
    cuda = torch.cuda.is_available()
    if not cuda and not args.quick:
        console.print("no CUDA device here: this benchmark measures GPU kernels, nothing was measured. "
                      "`python bench/kernels.py --quick` runs a CPU sanity pass instead.")
        return
    device = torch.device("cuda" if cuda else "cpu")
    dtype = DTYPES[args.dtype]
    meta = {"machine": platform.node(), "device": torch.cuda.get_device_name(device) if cuda else "cpu",
            "torch": torch.__version__, "dtype": args.dtype, "batch": args.batch, "resolution": args.resolution,
            "provenance": provenance()}
    rows: list[dict] = []

    def record(row: dict) -> None:  # written as it goes: an interrupted run keeps what it measured
        rows.append(row)
        console.log(f"{row['op']} | {row['case']} | {row['impl']}: "
                    f"{row.get('status') or _fmt(row.get('ms'), '.3f') + ' ms'}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str) + "\n")

    if cuda:
        meta["peak_gbps"] = peak_bandwidth_gbps(device, args.peak_gbps)
        repeats = 5 if args.quick else args.repeats
        cases = [c for s in args.spaces for c in kernel_cases(s, args.batch, args.resolution, dtype, device,
                                                              2 if args.quick else None)]
        bench_kernels(cases, device, repeats, meta["peak_gbps"], record)
        bench_supernet(args.spaces, args.supernet_modes, ["reference", "auto", "triton"], args.batch,
                       args.resolution, device, None if dtype == torch.float32 else dtype, repeats, record)
    else:
        console.print("no CUDA device: CPU sanity pass (Triton runs interpreted; timings are not GPU figures)")
        os.environ.setdefault("TRITON_INTERPRET", "1")
        torch.set_num_threads(1)  # a shared CPU: no spinning thread pool
        meta["dtype"] = "fp32"
        bench_kernels(tiny_cases(torch.float32), device, 1, None, record)
        bench_supernet(args.spaces, ["masked"], ["reference", "folded"], 2, 32, device, None, 1, record)
    print_table(console, [r for r in rows if r["kind"] == "kernel"],
                f"kernels on {meta['device']} ({meta['dtype']}); peak bandwidth {meta.get('peak_gbps') or '?'} GB/s")
    print_table(console, [r for r in rows if r["kind"] == "supernet"], "supernet training step")
    console.print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
