"""DARTS' skip-connection collapse against SP-DARTS and OStr, per search epoch, with the final discretised accuracy.

Plain DARTS and OStr share one supernet optimisation (OStr only changes the selection: `ostr-darts.txt`
Sec. V compares them on the same supernet), so one DARTS run gives both curves; SP-DARTS runs its own
(batch-mixed sparse) optimisation. Each final genotype is trained from scratch in the same evaluation network
and tested on the held-out split. The latency budget is the whole range (100%) with no floor: this measures the
collapse, not the latency term.

    python bench/darts_collapse.py --quick            # ~1-2 min on a 2-core CPU: a few epochs on 96 images
    python bench/darts_collapse.py                    # the long run: 30 epochs on all of digits
    python bench/darts_collapse.py --data cifar10:/data/cifar-10-batches-py --epochs 50

Scale-down vs the papers (say so when reporting): the supernet is a proxy (search_channels x search_layers at
search_resolution); the architecture split is half of the training images as in DARTS, but digits has far fewer
images than CIFAR-10, so α gets ~100x fewer Adam steps; `--arch-lr` (default 10x DARTS' 3e-4) partly makes up.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from search_common import measured_model, report

from hwnas.cells import Genotype, get_cell_space
from hwnas.config import DataConfig, SearchConfig
from hwnas.data import load_splits
from hwnas.search.runner import run_search
from hwnas.training import accuracy, train_network


def read_records(run: Path) -> list[dict]:
    with (run / "cells.csv").open() as handle:
        return list(csv.DictReader(handle))


def train_genotype(genotype: str, space, splits, epochs: int, batch_size: int, seed: int) -> float:
    """Test accuracy of `genotype` trained from scratch in `space`'s network."""
    torch.manual_seed(seed)
    model = space.arch(Genotype.parse(genotype)).build()
    train_network(model, splits["train"], epochs=epochs, batch_size=batch_size, lr=0.05, momentum=0.9,
                  weight_decay=3e-4, seed=seed)
    return accuracy(model, splits["test"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few epochs on 96 images per split, tiny proxies")
    parser.add_argument("--data", default="digits", help="digits (embedded) or cifar10:PATH")
    parser.add_argument("--epochs", type=int, default=None, help="search epochs (default 30; quick 3)")
    parser.add_argument("--train-epochs", type=int, default=None, help="from-scratch epochs (default 20; quick 1)")
    parser.add_argument("--resolution", type=int, default=None, help="input side (default 32; quick 16)")
    parser.add_argument("--arch-lr", type=float, default=3e-3, help="Adam lr of α (DARTS: 3e-4 on 25k images)")
    parser.add_argument("--search-channels", type=int, default=None, help="proxy C (default 4; quick 2)")
    parser.add_argument("--search-layers", type=int, default=5, help="proxy cells (default 5)")
    parser.add_argument("--search-resolution", type=int, default=None, help="proxy input side (default 16; quick 8)")
    parser.add_argument("--eval-channels", type=int, default=None, help="evaluation network C (default 16; quick 4)")
    parser.add_argument("--eval-layers", type=int, default=None, help="evaluation network cells (default 8; quick 3)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lut", type=Path, default=None, help="LUT CSV (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/darts_collapse.json"))
    args = parser.parse_args()
    quick = args.quick
    epochs = args.epochs or (3 if quick else 30)
    train_epochs = args.train_epochs or (1 if quick else 20)
    resolution = args.resolution or (16 if quick else 32)
    proxy_c = args.search_channels or (2 if quick else 4)
    eval_c, eval_l = args.eval_channels or (4 if quick else 16), args.eval_layers or (3 if quick else 8)
    limit = 96 if quick else 0
    torch.set_num_threads(args.threads)

    workdir = Path(tempfile.mkdtemp(prefix="hwnas-collapse-"))
    splits = load_splits(args.data, resolution, ("train", "test"), limit=limit)
    classes = splits["train"].num_classes
    space = get_cell_space("darts", resolution, classes)
    lut = args.lut or workdir / "cpu.csv"
    measured_model(lut, [space], args.device, quick)
    params = {"arch_lr": args.arch_lr, "search_channels": proxy_c, "search_layers": args.search_layers,
              "search_resolution": args.search_resolution or (8 if quick else 16)}
    base = SearchConfig(calibrate_networks=0, confirm=False,  # predictions, as before confirmation
                        device=args.device, lut=str(lut), space="darts", budget="100%", budget_floor=0.0,
                        epochs=epochs, warmup_epochs=0, seed=args.seed, threads=args.threads,
                        data=DataConfig(source=args.data, resolution=resolution, batch_size=args.batch_size,
                                        arch_fraction=0.5, limit=limit))
    runs = {"darts": ("darts", "magnitude"), "ostr": ("darts", "ostr"), "sp-darts": ("sp-darts", "magnitude")}
    records, seconds = {}, {}
    for strategy in ("darts", "sp-darts"):
        start = time.perf_counter()
        config = replace(base, strategy=strategy, strategy_params=params)
        run_search(config, workdir / strategy, space=space)
        records[strategy] = read_records(workdir / strategy)
        seconds[strategy] = time.perf_counter() - start

    def skips(method: str) -> list[float]:
        strategy, criterion = runs[method]
        return [float(r.get(f"skip_connect_{criterion}") or "nan") for r in records[strategy]]

    per_epoch = [{"epoch": e, **{m: skips(m)[e] for m in runs}} for e in range(epochs)]
    evaluation = get_cell_space("darts", resolution, classes).with_network(eval_c, eval_l)
    finals = []
    for method, (strategy, criterion) in runs.items():
        genotype = records[strategy][-1][f"genotype_{criterion}"]
        start = time.perf_counter()
        acc = train_genotype(genotype, evaluation, splits, train_epochs, args.batch_size, args.seed)
        finals.append({"method": method, "skip_connect": Genotype.parse(genotype).count("skip_connect"),
                       "skip_normal": Genotype.parse(genotype)["normal"].count("skip_connect"),
                       "test_acc": acc, "search_s": seconds[strategy], "train_s": time.perf_counter() - start,
                       "genotype": genotype})
    settings = {"quick": quick, "data": args.data, "epochs": epochs, "train_epochs": train_epochs,
                "resolution": resolution, "arch_lr": args.arch_lr,
                "proxy": f"C={proxy_c} L={args.search_layers} @{params['search_resolution']}px",
                "evaluation_network": f"C={eval_c} L={eval_l}", "limit": limit, "seed": args.seed,
                "per_epoch_skip_connect": per_epoch}
    report("skip connections in the derived cells per epoch (normal + reduce)", ["epoch", *runs], per_epoch,
           args.out.with_suffix(".epochs.json"), settings)
    report("final discretised architectures, trained from scratch", ["method", "skip_connect", "skip_normal",
                                                                      "test_acc", "search_s", "train_s"],
           finals, args.out, settings)


if __name__ == "__main__":
    main()
