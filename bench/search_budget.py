"""Every strategy meets budgets at 30/50/70% of its space's latency range on a device: the derived
architecture's predicted latency must be <= budget and >= 90% of it; its end-to-end latency is measured too.

    python bench/search_budget.py                 # each strategy on its paper's space, 32 px digits (long)
    python bench/search_budget.py --quick         # tiny spaces, 2 epochs, a subset of digits (~1-2 min)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from search_common import bench_space, measured_model, report

from hwnas.config import DataConfig, SearchConfig
from hwnas.device import get_device
from hwnas.lut.network_timing import measure_on_device
from hwnas.lut.table import default_lut_path
from hwnas.search.runner import run_search

STRATEGIES = ("fbnet", "proxyless", "hardcore", "densenas")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny spaces, 2 epochs, 320 images per split")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--shares", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (default 6; quick 2)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lut", type=Path, default=None, help="LUT CSV (default luts/DEVICE.csv; quick: a temp)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torch-device", default="auto", help="where supernets train (auto: CUDA if any)")
    parser.add_argument("--fbnet-soft", action="store_true", help="FBNet with the paper's soft masks over all paths "
                        "(about K=9 times slower on a CPU) instead of straight-through one-path samples")
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_budget.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = args.epochs or (2 if args.quick else 6)
    workdir = Path(tempfile.mkdtemp(prefix="hwnas-bench-"))
    lut = args.lut or (workdir / "cpu.csv" if args.quick else default_lut_path(args.device))
    spaces = {s: bench_space(s, args.quick, args.resolution) for s in args.strategies}
    measured_model(lut, list(spaces.values()), args.device, args.quick)
    base = SearchConfig(calibrate_networks=0, confirm=False,  # predictions, as before confirmation
                        device=args.device, lut=str(lut), epochs=epochs, warmup_epochs=1, threads=args.threads,
                        torch_device=args.torch_device,
                        data=DataConfig(resolution=args.resolution, limit=320 if args.quick else 0))
    rows = []
    for strategy in args.strategies:
        for share in args.shares:
            start = time.perf_counter()
            params = {"hard": True} if strategy == "fbnet" and not args.fbnet_soft else {}
            config = replace(base, strategy=strategy, space=spaces[strategy].name, budget=f"{share * 100:g}%",
                             strategy_params=params)
            result = run_search(config, workdir / f"{strategy}-{share}", space=spaces[strategy])
            derived = result.derivation
            budget = result.config.budget_ms
            measured = measure_on_device(get_device(args.device), lut, [("derived", derived.arch)])[0].median_ms
            rows.append({"strategy": strategy, "space": spaces[strategy].name, "share": share, "budget_ms": budget,
                         "predicted_ms": derived.predicted_ms, "of_budget": derived.predicted_ms / budget,
                         "within": derived.predicted_ms <= budget and derived.predicted_ms >= 0.9 * budget,
                         "repaired": str(derived.method), "argmax_ms": derived.argmax_ms, "measured_ms": measured,
                         "seconds": time.perf_counter() - start, "arch": derived.arch.to_string()})
    report("search budget (predicted within [0.9, 1.0] x budget)",
           ["strategy", "space", "share", "budget_ms", "predicted_ms", "of_budget", "within", "repaired",
            "measured_ms", "seconds"], rows, args.out,
           {"quick": args.quick, "epochs": epochs, "resolution": args.resolution, "device": args.device,
            "lut": str(lut), "all_within": all(r["within"] for r in rows)})


if __name__ == "__main__":
    main()
