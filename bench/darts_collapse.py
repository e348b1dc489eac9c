"""Does a cell search learn, and what does it collapse to? Per search epoch: the mean entropy of the architecture
weights (ln K per edge when uniform: nothing learned), the skip connections of the derived cells (DARTS' collapse to
parameter-free cells, thesis Sec. 3.2.2) and whether the derived cells changed; at the end, how many of the deployed
network's edges the budget repair or fill replaced (the search's choice is the rest), and optionally the final
genotypes trained from scratch.

Plain DARTS and OStr share one supernet optimisation (OStr only changes the selection: `ostr-darts.txt` Sec. V
compares them on the same supernet), so one DARTS run gives both; every other strategy runs its own. Each search
runs at the strategy's defaults unless -p says otherwise (`--arch-lr` included), so the table says what a user gets.

    python bench/darts_collapse.py --quick            # ~1-2 min on a 2-core CPU: a few epochs on 96 images
    python bench/darts_collapse.py                    # the collapse: DARTS and SP-DARTS on the DARTS space, 30
                                                      # epochs on digits, budget 100% without a floor
    python bench/darts_collapse.py --data /tmp/cifar10 --space nb201 --strategies darts fairdarts \\
        --train-limit 5000 --epochs 20 --share 0.5 --train-epochs 0
                                                      # learning at this machine's lengths: NB201 on 5,000 CIFAR-10
                                                      # images, budget 50% of the range with the default floor

Scale-down vs the papers (say so when reporting): the supernet is a proxy (search_channels x search_layers at
search_resolution); the architecture split is the search's default share of the training images.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from search_common import measured_model, report

from hwnas.cells import CellArch, Genotype, get_cell_space
from hwnas.cells.catalog import CELL_SPACES
from hwnas.config import DataConfig, SearchConfig, parse_assignments
from hwnas.data import load_splits
from hwnas.errors import ConfigError
from hwnas.search.run_folder import SUMMARY
from hwnas.search.runner import run_search
from hwnas.strategies import strategy_class
from hwnas.training import accuracy, train_network

CELL_STRATEGIES = ("darts", "fairdarts", "sp-darts", "ostr", "ddarts")


def read_records(run: Path) -> list[dict]:
    with (run / "cells.csv").open() as handle:
        return list(csv.DictReader(handle))


def train_genotype(genotype: str, space, splits, epochs: int, batch_size: int, seed: int) -> float:
    """Test accuracy of `genotype` trained from scratch in `space`'s network."""
    torch.manual_seed(seed)
    model = space.arch(Genotype.parse(genotype)).build()
    train_network(model, splits["train"], epochs=epochs, batch_size=batch_size, lr=0.05, momentum=0.9,
                  weight_decay=3e-4, seed=seed, warmup_epochs=1)
    return accuracy(model, splits["test"])


def curves(records: list[dict], criterion: str) -> list[dict]:
    """Per epoch: the cells derived by `criterion` (the search's own, or another one's from the same supernet),
    their skip connections and whether they changed since the epoch before."""
    key = "genotype" if criterion == "own" else f"genotype_{criterion}"
    rows, before = [], None
    for record in records:
        genotype = record.get(key) or record["genotype"]
        rows.append({"genotype": genotype, "skip": Genotype.parse(genotype).count("skip_connect"),
                     "changed": before is not None and genotype != before})
        before = genotype
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few epochs on 96 images per split, tiny proxies")
    parser.add_argument("--data", default="digits", help="digits (embedded), cifar10:PATH or an image folder")
    parser.add_argument("--space", default="darts", choices=sorted(CELL_SPACES))
    parser.add_argument("--strategies", nargs="+", default=["darts", "sp-darts"], choices=CELL_STRATEGIES,
                        help="cell strategies to run (darts also reports OStr's selection on its supernet)")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (default 30; quick 3)")
    parser.add_argument("--train-epochs", type=int, default=None,
                        help="from-scratch epochs of each final genotype (default 20; quick 1; 0: no training)")
    parser.add_argument("--train-limit", type=int, default=0, help="at most N training images (0: all)")
    parser.add_argument("--resolution", type=int, default=None, help="input side (default 32; quick 16)")
    parser.add_argument("--share", type=float, default=1.0, help="budget as a share of the space's latency range")
    parser.add_argument("--floor", type=float, default=None, help="budget floor (default: 0 at a 100%% budget, "
                        f"else the search's default {SearchConfig.budget_floor})")
    parser.add_argument("--arch-lr", type=float, default=None, help="Adam lr of α (default: the strategy's)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy hyperparameter for every strategy of the run, as in hwnas search -p")
    parser.add_argument("--eval-channels", type=int, default=None, help="evaluation network C (default 16; quick 4)")
    parser.add_argument("--eval-layers", type=int, default=None, help="evaluation network cells (default 8, or the "
                        "nearest count the space allows: 9 on nb201; quick 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lut", type=Path, default=None, help="LUT CSV (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/darts_collapse.json"))
    args = parser.parse_args()
    try:
        extra = parse_assignments(args.param)
    except ConfigError as error:
        parser.error(str(error))
    quick = args.quick
    epochs = args.epochs or (3 if quick else 30)
    train_epochs = (1 if quick else 20) if args.train_epochs is None else args.train_epochs
    resolution = args.resolution or (16 if quick else 32)
    floor = args.floor if args.floor is not None else (0.0 if args.share >= 1 else SearchConfig.budget_floor)
    limit = 96 if quick else 0
    torch.set_num_threads(args.threads)

    workdir = Path(tempfile.mkdtemp(prefix="hwnas-collapse-"))
    data = DataConfig(source=args.data, resolution=resolution, batch_size=args.batch_size, limit=limit,
                      train_limit=args.train_limit)
    splits = load_splits(data.source, resolution, ("train", "test"), **data.load_options())
    space = get_cell_space(args.space, resolution, splits["train"].num_classes)
    lut = args.lut or workdir / "cpu.csv"
    measured_model(lut, [space], args.device, quick)
    params = {**({"search_channels": 2, "search_resolution": 8} if quick else {}),
              **({"arch_lr": args.arch_lr} if args.arch_lr is not None else {}), **extra}
    base = SearchConfig(calibrate_networks=0, confirm=False,  # predictions: this measures the search, not the device
                        device=args.device, lut=str(lut), space=args.space, budget=f"{args.share * 100:g}%",
                        budget_floor=floor, epochs=epochs, warmup_epochs=0, seed=args.seed, threads=args.threads,
                        data=data)
    records, summaries, seconds, used = {}, {}, {}, {}
    for strategy in args.strategies:
        start = time.perf_counter()
        config = replace(base, strategy=strategy, strategy_params=params)
        run_search(config, workdir / strategy, space=space)
        records[strategy] = read_records(workdir / strategy)
        summaries[strategy] = json.loads((workdir / strategy / SUMMARY).read_text())
        seconds[strategy] = time.perf_counter() - start
        used[strategy] = float(params.get("arch_lr", strategy_class(strategy).Params.arch_lr))
    # (column, strategy whose supernet, criterion): OStr's selection comes free with DARTS' supernet
    methods = [(s, s, "own") for s in args.strategies]
    if "darts" in args.strategies and "ostr" not in args.strategies:
        methods.append(("ostr (darts supernet)", "darts", "ostr"))
    curve_of = {column: curves(records[strategy], criterion) for column, strategy, criterion in methods}
    per_epoch = []
    for epoch in range(epochs):
        row = {"epoch": epoch}
        for column, strategy, _ in methods:
            if epoch >= len(records[strategy]):
                continue  # an early stop ended this search
            row[f"{column} entropy"] = float(records[strategy][epoch]["arch_entropy"])
            row[f"{column} skip"] = curve_of[column][epoch]["skip"]
            row[f"{column} changed"] = curve_of[column][epoch]["changed"]
        per_epoch.append(row)
    evaluation = space.with_network(args.eval_channels or (4 if quick else 16),
                                    space.nearest_layers(args.eval_layers or (3 if quick else 8)))
    finals = []
    for column, strategy, criterion in methods:
        curve, summary = curve_of[column], summaries[strategy]
        entry = {"method": column, "arch_lr": used[strategy], "epochs_run": len(records[strategy]),
                 "entropy_first": float(records[strategy][0]["arch_entropy"]),
                 "entropy_last": float(records[strategy][-1]["arch_entropy"]),
                 "changes": sum(c["changed"] for c in curve), "skip_connect": curve[-1]["skip"],
                 "search_s": seconds[strategy], "genotype": curve[-1]["genotype"]}
        if criterion == "own":  # the deployed network of this search: what the repair or fill replaced
            deployed = CellArch.parse(summary["arch"]).genotype
            edges = sum(len(incoming) for _, cell in deployed.cells for incoming in cell.nodes)
            entry.update(budget_ms=summary["budget_ms"], argmax_ms=summary["argmax_ms"],
                         predicted_ms=summary["predicted_ms"], derivation=summary["repair_method"],
                         filled_edges=len(summary.get("repairs") or []), kept_edges=edges)
        if train_epochs:
            start = time.perf_counter()
            entry["test_acc"] = train_genotype(entry["genotype"], evaluation, splits, train_epochs, args.batch_size,
                                               args.seed)
            entry["train_s"] = time.perf_counter() - start
        finals.append(entry)
    settings = {"quick": quick, "data": args.data, "space": args.space, "epochs": epochs,
                "train_epochs": train_epochs, "train_limit": args.train_limit, "resolution": resolution,
                "share": args.share, "floor": floor, "params": params, "limit": limit, "seed": args.seed,
                "evaluation_network": f"C={evaluation.channels} L={evaluation.layers}", "per_epoch": per_epoch}
    report("per search epoch: mean architecture-weight entropy (uniform: ln K), skip connections of the derived "
           "cells, derived cells changed", list(per_epoch[0]), per_epoch, args.out.with_suffix(".epochs.json"),
           settings)
    report("final: entropy first/last epoch, epochs whose derived cells changed, edges the fill or repair replaced",
           ["method", "arch_lr", "entropy_first", "entropy_last", "changes", "skip_connect", "budget_ms",
            "argmax_ms", "predicted_ms", "filled_edges", "kept_edges", "test_acc", "search_s"],
           finals, args.out, settings)


if __name__ == "__main__":
    main()
