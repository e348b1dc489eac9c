"""Does a search's supernet rank networks the way training them from scratch does? For every search of a
bench/search_quality run, each network of that comparison (the searches' and the random ones) is scored inside the
search's final supernet, with the shared weights and batch-norm statistics re-estimated for that network, and the
scores are compared with the networks' from-scratch accuracies from the run's JSON.

A one-shot search can only find what its supernet scores highly. So this tells apart the two ways a search can
fail to beat random networks:
- Kendall's tau near 0: the supernet's scores do not predict the from-scratch accuracies. No optimizer working on
  those weights beats random search but by chance; the remedy is a better-trained supernet.
- tau clearly positive, but the searched network scores low among the randoms inside its own supernet: the
  architecture optimizer did not find what its supernet prefers.

    python bench/supernet_rank.py bench/results/search_quality_fashion_hardcore_s3x3.json
    python bench/supernet_rank.py RESULTS.json --split test --threads 2

No training: one pass of the chosen split per network and search (about 10-20 s for each on 2 CPU cores at 32 px).
Chain spaces only; a DenseNAS row is skipped with its reason printed.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from scipy.stats import kendalltau
from search_common import bench_space, measured_model, report

from hwnas.arch import Arch
from hwnas.config import DataConfig
from hwnas.data import load_splits
from hwnas.distributed import resolve_device
from hwnas.search.run_folder import RunDir
from hwnas.search.selection import HELDOUT_SPLITS, supernet_scorer
from hwnas.spaces.dense import DenseSpace
from hwnas.strategies.base import SearchProblem, make_strategy

SCORING_SPLITS = {"val": ("val",), "test": ("test",), "heldout": HELDOUT_SPLITS}  # heldout: as --candidates


@cache
def _splits(data: DataConfig, split: str) -> dict[str, Any]:
    """The calibration and scoring splits, read once for all the searches of a run (they share the data)."""
    return load_splits(data.source, data.resolution, ("train_weights", *SCORING_SPLITS[split]),
                       **data.load_options())


def supernet_scores(run_path: Path, space: Any, lut: Path, quick: bool, networks: dict[str, str], split: str,
                    console: Console) -> dict[str, float]:
    """Accuracy on `split` of each named network (arch string) inside the final supernet of the search in
    `run_path`."""
    run = RunDir(run_path)
    config = run.config()
    data = config.data
    splits = _splits(data, split)
    space = space.with_resolution(data.resolution).with_classes(splits["train_weights"].num_classes)
    problem = SearchProblem(space, measured_model(lut, [space], config.device, quick), config.budget_ms,
                            config.seed, config.budget_floor)
    strategy = make_strategy(config.strategy, problem, config.strategy_params)
    supernet = strategy.supernet
    supernet.load_state_dict(run.load_checkpoint()["supernet"])
    device = resolve_device(config.torch_device)
    supernet.to(device)
    score = supernet_scorer(supernet, splits, data.batch_size, config.seed, device, SCORING_SPLITS[split])
    scores = {}
    for name, arch in networks.items():
        started = time.perf_counter()
        scores[name] = score(space.choices_of(Arch.parse(arch)))
        console.print(f"  {run_path.name}: {name} scores {scores[name]:.4f} in the supernet "
                      f"({time.perf_counter() - started:.0f} s)")
    return scores


def rank_row(strategy: str, search_index: int, supernet: dict[str, float], scratch: dict[str, float]) -> dict:
    """How one search's supernet scores agree with the from-scratch accuracies of the same networks."""
    randoms = [name for name in scratch if name.startswith("random")]
    own = f"search {search_index + 1}"
    names = list(scratch)
    tau_all, p_all = kendalltau([supernet[n] for n in names], [scratch[n] for n in names])
    tau_random, p_random = kendalltau([supernet[n] for n in randoms], [scratch[n] for n in randoms])
    supernet_pick = max(randoms, key=lambda n: supernet[n])
    return {"strategy": strategy, "search": search_index + 1, "networks": len(names),
            "tau": float(tau_all), "tau_p": float(p_all), "tau_randoms": float(tau_random),
            "tau_randoms_p": float(p_random),
            "own_supernet_acc": supernet[own],
            "own_beats_randoms_in_supernet": sum(supernet[own] > supernet[n] for n in randoms),
            "supernet_pick": supernet_pick, "supernet_pick_scratch_acc": scratch[supernet_pick],
            "supernet_pick_scratch_rank": 1 + sum(scratch[n] > scratch[supernet_pick] for n in randoms),
            "best_random_scratch_acc": max(scratch[n] for n in randoms),
            "supernet_accs": supernet, "scratch_accs": scratch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a bench/search_quality JSON (its search folders must exist)")
    parser.add_argument("--split", default="val", choices=tuple(SCORING_SPLITS),
                        help="images the supernet scores networks on (default: the searches' own validation split; "
                        "heldout: the architecture and validation splits, as hwnas search --candidates)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON to write (default: the results file's name with _rank)")
    args = parser.parse_args()
    if not args.results.exists():
        parser.error(f"{args.results}: no such file; run bench/search_quality.py first")
    torch.set_num_threads(args.threads)
    results = json.loads(args.results.read_text())
    lut = Path(results["lut"])
    console = Console()
    rows = []
    for row in results["rows"]:
        space = bench_space(row["strategy"], results["quick"], results["resolution"])
        if isinstance(space, DenseSpace):
            console.print(f"{row['strategy']}: skipped, a dense routing space has no single-path score here")
            continue
        entries = {**{f"search {i + 1}": s for i, s in enumerate(row["searches"])},
                   **{f"random {i + 1}": r for i, r in enumerate(row["randoms"])}}
        networks = {name: entry["arch"] for name, entry in entries.items()}
        scratch = {name: entry["acc"] for name, entry in entries.items()}
        for index, search in enumerate(row["searches"]):
            scores = supernet_scores(Path(search["run"]), space, lut, results["quick"], networks, args.split, console)
            rows.append(rank_row(row["strategy"], index, scores, scratch))
    out = args.out or args.results.with_name(args.results.stem + "_rank.json")
    report(f"supernet scores ({args.split} split) vs from-scratch accuracies (Kendall tau)",
           ["strategy", "search", "networks", "tau", "tau_p", "tau_randoms", "tau_randoms_p", "own_supernet_acc",
            "own_beats_randoms_in_supernet", "supernet_pick", "supernet_pick_scratch_rank",
            "supernet_pick_scratch_acc", "best_random_scratch_acc"],
           rows, out, {"results": str(args.results), "split": args.split,
                       "median_tau": float(np.median([r["tau"] for r in rows])) if rows else None})


if __name__ == "__main__":
    main()
