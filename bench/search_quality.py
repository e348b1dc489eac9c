"""Does the search pay off? On the embedded digits data (or --data), each strategy's network against the best
of N random networks of the same space meeting the same budget (predicted latency within [floor · budget,
budget]), all trained from scratch with the same schedule and scored on the held-out test split as the mean of 3
trainings (seeds 0, 1, 2; one test image is 0.28% of digits' 359). The space's fastest network is trained too:
where it scores like the best random one, the data cannot tell the space's architectures apart. With
--searches N each strategy searches N times (seeds seed..seed+N-1) and its median network is what must beat the
best random one: one search is one draw, and searches spread about as widely as random networks do. The JSON keeps
every network's accuracy per seed; `margin` is the median search's mean minus the best random one's and
`margin_se` its standard error from the seeds' spread (a margin under about twice that is training-seed noise).
`network_sd` and `seed_sd` say whether the networks can be told apart at all: the spread of their true accuracies
and of one network's accuracy between training seeds. With network_sd near 0 the ranking is the seeds' lottery
(bench/supernet_rank.py then asks whether the supernet ranks them any better). The best of N random networks is
picked by the same trainings that score it, so it carries the luck that made it best: --confirm-seeds M trains
it and the median search again on M fresh seeds, and `confirm_margin` compares those unbiased means.
--candidates N ends each search by scoring its derived network and N draws in the budget band inside its supernet
and keeping the best (hwnas search --candidates); a finished search of the same settings without it lends its
supernet, so only the selection runs.

Every search keeps its run folder under --runs (named by its settings) and every training its accuracy in --cache
(keyed by architecture, seed and training settings), so a run that is stopped continues where it was, and a second
run with other searches or more seeds reuses what was trained. --search-limit N searches on the first N of the
trainings' images (a subset of them). --jobs 2 with --threads 2 trains two networks at once on one thread each,
faster than one at a time on two threads. --searches-only stops after the searches (to search where cores or a GPU
are free and train elsewhere; the later full run reads them back from --runs; on 2 cores beside a --jobs 2 run it
oversubscribes them and both crawl). Run nothing CPU-heavy beside it: an FBNet supernet's weights-only epoch on
7,000 CIFAR-10 images took 926 s beside a one-thread DARTS search and 266 s alone.

    python bench/search_quality.py                # paper spaces, 32 px, 10 random networks each, 8 search epochs
                                                  # (2 warm-up), 10 training epochs, 3 seeds: 36 trainings per
                                                  # strategy, 30-45 min each on 2 CPU cores with --threads 2
                                                  # (DenseNAS about 100); --seeds 1 for a third of that
    python bench/search_quality.py --quick        # tiny spaces, a subset of digits, 3 random networks (~2 min)
    python bench/search_quality.py --data digits-hard --search-epochs 30 --warmup-epochs 10 --strategies hardcore \
        --searches 3 --threads 2 --jobs 2 --train-epochs 30
                                                  # the embedded hard set: every paper-space network scores ~99% on
                                                  # digits, so only chance separates them there; on digits-hard a
                                                  # supernet needs ~10 weight-only epochs before its architecture
                                                  # gradients carry signal, and in 10 training epochs the networks
                                                  # underfit (53-69%, the shallowest win) where 30 reach 73-85%
                                                  # (3 searches 21-27 min, 42 trainings ~2 h)
    python bench/search_quality.py --data digits-hard --search-epochs 18 --warmup-epochs 6 --strategies fbnet \
        --train-epochs 30 --train-lr 0.02 -p budget_control=argmax -p arch_lr=0.2 -p tau_end=0.1 \
        --searches 3 --seeds 1 --confirm-seeds 3 --threads 2 --jobs 2
                                                  # FBNet's 22-layer space on digits-hard: at the default training
                                                  # rate (0.05) its networks diverge early on some seeds (one fell to
                                                  # 16%, the same network reached 69% at 0.02), so its comparison
                                                  # there was the seeds' lottery; --train-lr sets the trainings' rate
    python bench/search_quality.py --data cifar10:PATH   # a harder dataset (searched at 32 px as well)

FBNet runs with the paper's soft masks: a supernet of separate candidate weights trained one random path per step
stays at chance accuracy (a stage's first layer has no residual, and its candidates never agree on what their
output channels mean), so its architecture weights learn from noise. FBNet's space cannot share weights (grouped
candidates, a projecting skip), so --fbnet-hard still does; ProxylessNAS and DenseNAS share them by default.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from search_common import bench_space, measured_model, report

from hwnas.arch import Arch
from hwnas.budget.costs import chain_cost
from hwnas.budget.projection import project_chain
from hwnas.config import DataConfig, SearchConfig, TrainConfig, parse_assignments, to_dict
from hwnas.data import load_splits
from hwnas.distributed import resolve_device
from hwnas.errors import ConfigError
from hwnas.export.report import inputs_key
from hwnas.lut.model import LatencyModel
from hwnas.search.run_folder import CHECKPOINT, SUMMARY
from hwnas.search.runner import run_search
from hwnas.spaces.dense import DenseSpace
from hwnas.strategies import candidates_to_select
from hwnas.training import accuracy, train_with

STRATEGIES = ("fbnet", "proxyless", "hardcore", "densenas")


def random_in_band(space: Any, model: Any, budget: float, floor: float, rng: random.Random,
                   tries: int = 3000) -> tuple[Arch, str]:
    """A uniformly random architecture with predicted latency in [floor·budget, budget] (rejection sampling);
    for a chain space that rarely lands there, random scores projected into the band instead."""
    for _ in range(tries):
        arch = space.sample(rng)
        if floor * budget <= model.predict(arch) <= budget:
            return arch, "rejection"
    if isinstance(space, DenseSpace):
        raise RuntimeError(f"no random {space.name} architecture in the band after {tries} tries")
    scores = [np.log(np.asarray([rng.random() for _ in p.candidates]) + 1e-12) for p in space.positions]
    projection = project_chain(scores, chain_cost(space, model), budget, "lp", floor=floor)
    return space.arch(list(projection.choices)), "projected"


def fastest_network(space: Any, model: Any) -> Arch | None:
    """The chain space's fastest architecture (None for a dense space): if it scores like the best random network,
    the data cannot tell the space's architectures apart and no search can beat them but by chance."""
    if isinstance(space, DenseSpace):
        return None
    return space.arch([int(np.argmin(t.numpy())) for t in chain_cost(space, model).candidates_ms])


def train_and_test(arch: Arch, splits: dict[str, Any], epochs: int, config: SearchConfig, seed: int) -> float:
    """Test accuracy of `arch` after one training from scratch with `seed`."""
    torch.manual_seed(seed)
    model = arch.build()
    train_with(model, splits["train"], replace(config.train, epochs=epochs), seed=seed,
               device=resolve_device(config.torch_device))
    return accuracy(model, splits["test"])


_WORKER_SPLITS: dict[str, Any] = {}


def _start_worker(data: DataConfig, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER_SPLITS.update(load_splits(data.source, data.resolution, ("train", "test"), **data.load_options()))


def _train_in_worker(arch: str, epochs: int, config: SearchConfig, seed: int) -> float:
    return train_and_test(Arch.parse(arch), _WORKER_SPLITS, epochs, config, seed)


class TrainingCache:
    """Test accuracy of every (network, training seed) already trained with the same settings, written after each
    training, so a stopped run continues where it was. The thread count per training is a setting too: float
    summation order differs with it, so trainings are not bit-identical across it."""

    def __init__(self, path: Path | None, splits: dict[str, Any], epochs: int, config: SearchConfig, seeds: int,
                 jobs: int = 1):
        self.path, self.splits, self.epochs, self.config, self.jobs = path, splits, epochs, config, jobs
        self.seeds = range(config.seed, config.seed + seeds)
        self.threads = max(1, config.threads // jobs)
        stored = json.loads(path.read_text()) if path is not None and path.exists() else {}
        self.entries = {seed: stored.get(self.settings(seed), {}) for seed in self.seeds}

    def settings(self, seed: int) -> str:
        config = self.config
        return json.dumps({"data": config.data.source, "resolution": config.data.resolution,
                           "limit": config.data.limit, "batch_size": config.train.batch_size, "epochs": self.epochs,
                           "seed": seed, "lr": config.train.lr, "momentum": config.train.momentum,
                           "weight_decay": config.train.weight_decay, "threads": self.threads,
                           **({"warmup_epochs": config.train.warmup_epochs} if config.train.warmup_epochs else {}),
                           **({"zero_init_residual": True} if config.train.zero_init_residual else {}),
                           **({"train_limit": config.data.train_limit} if config.data.train_limit else {})},
                          sort_keys=True)

    def accuracies(self, archs: dict[str, str], console: Console) -> dict[str, float]:
        """Each named network's (arch string's) test accuracy, the mean over the seeds' trainings; missing
        trainings run `jobs` at a time (each in its own process with threads // jobs torch threads)."""
        missing = list(dict.fromkeys((arch, seed) for arch in archs.values() for seed in self.seeds
                                     if arch not in self.entries[seed]))
        names = {arch: name for name, arch in reversed(archs.items())}
        started = time.perf_counter()
        for done, ((arch, seed), accuracy_) in enumerate(self._train(missing), 1):
            self._store(arch, seed, accuracy_)
            console.print(f"  trained {done}/{len(missing)}: {names[arch]}, seed {seed}: test accuracy "
                          f"{accuracy_:.4f} ({time.perf_counter() - started:.0f} s)")
        return {name: float(np.mean(self.seed_accuracies(arch))) for name, arch in archs.items()}

    def seed_accuracies(self, arch: str) -> list[float]:
        """`arch`'s test accuracy after each seed's training, in seed order."""
        return [self.entries[seed][arch] for seed in self.seeds]

    def _train(self, missing: list[tuple[str, int]]) -> Iterator[tuple[tuple[str, int], float]]:
        if self.jobs == 1 or len(missing) < 2:
            torch.set_num_threads(self.threads)
            for arch, seed in missing:
                yield (arch, seed), train_and_test(Arch.parse(arch), self.splits, self.epochs, self.config, seed)
            return
        with ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_start_worker, initargs=(self.config.data, self.threads)) as pool:
            futures = {pool.submit(_train_in_worker, arch, self.epochs, self.config, seed): (arch, seed)
                       for arch, seed in missing}
            for future in as_completed(futures):
                yield futures[future], future.result()

    def _store(self, arch: str, seed: int, accuracy_: float) -> None:
        self.entries[seed][arch] = accuracy_
        if self.path is not None:
            stored = json.loads(self.path.read_text()) if self.path.exists() else {}
            stored[self.settings(seed)] = self.entries[seed]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(stored, indent=1) + "\n")


def margin_standard_error(searched: list[float], best_random: list[float]) -> float | None:
    """Standard error of (searched mean - best random mean) from the spread of each network's trainings over
    seeds (None with one seed): a margin within about two of it is a coin toss of training seeds."""
    if len(searched) < 2:
        return None
    return float(np.sqrt(np.var(searched, ddof=1) / len(searched) + np.var(best_random, ddof=1) / len(best_random)))


def network_and_seed_spread(seed_accuracies: list[list[float]]) -> tuple[float, float] | None:
    """(network_sd, seed_sd): how much the networks' true accuracies differ, and how much one network's accuracy
    moves between training seeds (one-way analysis of variance over the networks' per-seed accuracies; None with
    one seed). Where network_sd is small beside seed_sd / sqrt(seeds), the networks cannot be told apart under this
    schedule: the best of N random ones is the luckiest of N, and no search beats it but by chance."""
    accuracies = np.asarray(seed_accuracies)
    seeds = accuracies.shape[1]
    if seeds < 2:
        return None
    seed_var = float(accuracies.var(axis=1, ddof=1).mean())
    network_var = float(accuracies.mean(axis=1).var(ddof=1)) - seed_var / seeds
    return float(np.sqrt(max(network_var, 0.0))), float(np.sqrt(seed_var))


def space_latency_digest(model: LatencyModel, space: Any) -> str:
    """A digest of what a search of `space` reads from the LUT: its blocks' latencies and the calibration at its
    resolution. Rows that another space adds to a shared LUT leave it, and the search folders named by it, as
    they were."""
    keys = sorted({spec.key for spec in space.specs()})
    latencies = [float(ms) for ms in model.table.latencies(keys, model.force)]
    return inputs_key({"blocks": dict(zip(keys, latencies)),
                       "calibration": model.calibration_for(space.resolution).to_dict()})


def _search_folder(config: SearchConfig, runs: Path, space: Any, latency_digest: str) -> Path:
    settings = to_dict(config)
    del settings["train"]  # the from-scratch training's settings do not change a search
    if not config.data.train_limit:  # the folders of searches from before --train-limit keep their names
        settings["data"].pop("train_limit")
    settings["select_candidates"] = candidates_to_select(config.strategy, config.select_candidates)
    if not settings["select_candidates"]:  # nor those from before --candidates
        settings.pop("select_candidates")
    key = inputs_key({"config": settings, "space": repr(space), "lut": latency_digest})
    return runs / f"{config.strategy}-seed{config.seed}-{key}"


def search_once(config: SearchConfig, runs: Path, space: Any, latency_digest: str) -> dict[str, Any]:
    """One search's derived network, in a run folder named by a hash of its settings and the latencies it reads:
    read back when that search finished before, resumed from its checkpoint when it was stopped, run otherwise.
    With --candidates, a finished search of the same settings without them lends its supernet: only the
    selection runs."""
    out = _search_folder(config, runs, space, latency_digest)
    if not (out / SUMMARY).exists():
        resume = (out / CHECKPOINT).exists()
        plain = _search_folder(replace(config, select_candidates=0), runs, space, latency_digest)
        candidates = candidates_to_select(config.strategy, config.select_candidates)
        if candidates and not resume and (plain / SUMMARY).exists():
            shutil.copytree(plain, out)
            run_search(None, out, resume=True, select_candidates=candidates, space=space)
        else:
            run_search(None if resume else config, out, resume=resume, space=space)
    summary = json.loads((out / SUMMARY).read_text())
    selection = summary.get("selection") or {}
    return {"seed": config.seed, "predicted_ms": summary["predicted_ms"], "budget_ms": summary["budget_ms"],
            "derivation": summary["repair_method"], "arch": summary["arch"], "run": str(out),
            "arch_confidence": summary.get("arch_confidence"),  # None for searches run before it was recorded
            "selection": {k: v for k, v in selection.items() if k != "table"} or None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny spaces, 320 images per split, 3 random nets")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--share", type=float, default=0.5, help="budget as a share of the latency range")
    parser.add_argument("--random", type=int, default=None, help="random networks per strategy (default 10)")
    parser.add_argument("--search-epochs", type=int, default=None, help="default 8 (quick 3)")
    parser.add_argument("--warmup-epochs", type=int, default=2, help="search epochs training weights only")
    parser.add_argument("--train-epochs", type=int, default=None, help="default 10 (quick 4)")
    parser.add_argument("--train-lr", type=float, default=TrainConfig.lr,
                        help=f"peak SGD learning rate of the trainings (default {TrainConfig.lr}; not the searches')")
    parser.add_argument("--train-batch-size", type=int, default=TrainConfig.batch_size,
                        help=f"images per step of the trainings (default {TrainConfig.batch_size}; not the searches')")
    parser.add_argument("--seeds", type=int, default=None, help="trainings averaged per network (default 3, quick 1)")
    parser.add_argument("--confirm-seeds", type=int, default=0, help="train the median search and the best random "
                        "network again on N fresh seeds: the best of N random networks picked and scored on the same "
                        "seeds carries the luck that made it best (confirm_margin does not)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--data", default="digits", help="digits, digits-hard (embedded), cifar10:PATH, a folder")
    parser.add_argument("--train-limit", type=int, default=0, help="at most N training images, the whole test set "
                        "(a large dataset's test set resolves small differences; 0: all)")
    parser.add_argument("--search-limit", type=int, default=0, help="at most N training images for the searches "
                        "(the first N of the trainings' --train-limit images, so a subset of them; 0: the same)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lut", type=Path, default=None, help="LUT CSV (default luts/cpu.csv; quick: a temp)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--torch-device", default="auto", help="where supernets and networks train (auto: CUDA if any)")
    parser.add_argument("--fbnet-hard", action="store_true", help="FBNet with one-path straight-through samples "
                        "(about K=9 times faster on a CPU than the paper's soft masks, but its supernet of separate "
                        "weights trained one random path per step stays at chance accuracy)")
    parser.add_argument("--unit-init", action="store_true", help="supernets start with unit batch-norm scales in "
                        "their residual branches (before zero_init_residual; to compare with it)")
    parser.add_argument("--candidates", type=int, default=None, help="each search ends by scoring its derived "
                        "network and N draws in the budget band inside its supernet and keeps the best (hwnas search "
                        "--candidates; default: the strategy's, as hwnas search)")
    parser.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="strategy hyperparameter for every strategy of the run (repeatable), as in hwnas search "
                        "-p; e.g. -p samples=1 for HardCoRe-NAS's one-sample gradient")
    parser.add_argument("--searches", type=int, default=1, help="searches per strategy (seeds seed, seed + 1, ...); "
                        "their median network is compared with the best random one")
    parser.add_argument("--searches-only", action="store_true", help="run (or read back) the searches and stop "
                        "before training; a later run without it reads them back")
    parser.add_argument("--cache", type=Path, default=Path("bench/results/search_quality_cache.json"),
                        help="accuracies of trained networks, reused by runs with the same training settings")
    parser.add_argument("--jobs", type=int, default=1, help="trainings run at once, each in its own process with "
                        "threads // jobs torch threads (2 one-thread trainings outrun one two-thread training)")
    parser.add_argument("--runs", type=Path, default=Path("bench/results/search_quality_runs"),
                        help="search run folders, named by their settings: a finished search is read back, a "
                        "stopped one resumed")
    parser.add_argument("--out", type=Path, default=Path("bench/results/search_quality.json"))
    args = parser.parse_args()
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs}: expected 1 or more trainings at once")
    if args.search_limit < 0 or (args.train_limit and args.search_limit > args.train_limit):
        parser.error(f"--search-limit {args.search_limit}: expected 0 or a count up to --train-limit "
                     f"{args.train_limit} (searches read a subset of the trainings' images)")
    try:
        extra_params = parse_assignments(args.param)
    except ConfigError as error:
        parser.error(str(error))
    torch.set_num_threads(args.threads)
    count = args.random or (3 if args.quick else 10)
    search_epochs = args.search_epochs or (3 if args.quick else 8)
    train_epochs = args.train_epochs or (4 if args.quick else 10)
    seeds = args.seeds or (1 if args.quick else 3)
    workdir = Path(tempfile.mkdtemp(prefix="hwnas-bench-"))
    lut = args.lut or (workdir / "cpu.csv" if args.quick else Path("luts/cpu.csv"))
    spaces = {s: bench_space(s, args.quick, args.resolution) for s in args.strategies}
    model = measured_model(lut, list(spaces.values()), "cpu", args.quick)
    data = DataConfig(source=args.data, resolution=args.resolution, limit=320 if args.quick else 0,
                      train_limit=args.train_limit)
    search_data = replace(data, train_limit=args.search_limit) if args.search_limit else data
    base = SearchConfig(calibrate_networks=0, confirm=False,  # predictions, as before confirmation
                        lut=str(lut), epochs=search_epochs, warmup_epochs=min(args.warmup_epochs, search_epochs),
                        threads=args.threads, seed=args.seed, zero_init_residual=not args.unit_init,
                        select_candidates=args.candidates,
                        budget=f"{args.share * 100:g}%", data=search_data, torch_device=args.torch_device)
    splits = load_splits(data.source, data.resolution, ("train", "test"), **data.load_options())
    trained = replace(base, data=data, train=replace(base.train, lr=args.train_lr, batch_size=args.train_batch_size))
    cache = TrainingCache(None if args.quick else args.cache, splits, train_epochs, trained, seeds, args.jobs)
    runs = workdir if args.quick else args.runs
    rows = []
    console = Console()
    for strategy in args.strategies:
        space = spaces[strategy]
        start = time.perf_counter()
        params = {**({"hard": True} if strategy == "fbnet" and args.fbnet_hard else {}), **extra_params}
        searches = []
        latency_digest = space_latency_digest(model, space)
        for offset in range(args.searches):
            config = replace(base, strategy=strategy, space=space.name, strategy_params=params,
                             seed=args.seed + offset)
            searches.append(search_once(config, runs, space, latency_digest))
            console.print(f"{strategy} search {offset + 1}/{args.searches}: {searches[-1]['predicted_ms']:.3f} ms "
                          f"(budget {searches[-1]['budget_ms']:.3f}) after {time.perf_counter() - start:.0f} s")
        if args.searches_only:
            continue
        budget, floor = searches[0]["budget_ms"], base.budget_floor
        rng = random.Random(args.seed)
        randoms = []
        for _ in range(count):
            arch, how = random_in_band(space, model, budget, floor, rng)
            randoms.append({"how": how, "predicted_ms": model.predict(arch), "arch": arch.to_string()})
        fastest = fastest_network(space, model)
        networks = {f"search {i + 1}": s["arch"] for i, s in enumerate(searches)}
        networks.update({f"random {i + 1}": r["arch"] for i, r in enumerate(randoms)})
        if fastest is not None:
            networks["fastest"] = fastest.to_string()
        accuracies = cache.accuracies(networks, console)
        for name, entry in [*((f"search {i + 1}", s) for i, s in enumerate(searches)),
                            *((f"random {i + 1}", r) for i, r in enumerate(randoms))]:
            entry["acc"], entry["seed_accs"] = accuracies[name], cache.seed_accuracies(entry["arch"])
        median = float(np.median([s["acc"] for s in searches]))
        best_random = max(randoms, key=lambda r: r["acc"])
        best = best_random["acc"]
        median_search = min(searches, key=lambda s: abs(s["acc"] - median))
        spread = network_and_seed_spread([n["seed_accs"] for n in (*searches, *randoms)]) or (None, None)
        confirmed = {}
        if args.confirm_seeds:
            fresh = TrainingCache(None if args.quick else args.cache, splits, train_epochs,
                                  replace(trained, seed=base.seed + seeds), args.confirm_seeds, args.jobs)
            console.print(f"{strategy}: the median search and the best random network again, on "
                          f"{args.confirm_seeds} fresh seeds")
            again = fresh.accuracies({"median search": median_search["arch"], "best random": best_random["arch"]},
                                     console)
            searched_seeds = fresh.seed_accuracies(median_search["arch"])
            random_seeds = fresh.seed_accuracies(best_random["arch"])
            confirmed = {"confirm_searched_acc": again["median search"],
                         "confirm_best_random_acc": again["best random"],
                         "confirm_margin": again["median search"] - again["best random"],
                         "confirm_searched_seed_accs": searched_seeds, "confirm_best_random_seed_accs": random_seeds,
                         "confirm_margin_se": margin_standard_error(searched_seeds, random_seeds)}
        rows.append({"strategy": strategy, "space": space.name, "budget_ms": budget,
                     "predicted_ms": median_search["predicted_ms"], "derivation": median_search["derivation"],
                     "searched_acc": median, "searches_beating": sum(s["acc"] > best for s in searches),
                     "randoms_beaten": sum(median > r["acc"] for r in randoms),
                     "best_random_acc": best, "mean_random_acc": float(np.mean([r["acc"] for r in randoms])),
                     "beats_best_random": median > best, "margin": median - best,
                     "margin_se": margin_standard_error(median_search["seed_accs"], best_random["seed_accs"]),
                     "fastest_acc": accuracies.get("fastest"),
                     "network_sd": spread[0], "seed_sd": spread[1], **confirmed,
                     "random": count, "seconds": time.perf_counter() - start,
                     "arch": median_search["arch"], "searches": searches, "randoms": randoms})
    if args.searches_only:
        return
    report(f"median of {args.searches} search(es) vs best of {count} random networks in "
           f"[{base.budget_floor:g}, 1] x budget",
           ["strategy", "space", "budget_ms", "predicted_ms", "derivation", "searched_acc", "searches_beating",
            "randoms_beaten", "best_random_acc", "mean_random_acc", "beats_best_random", "margin", "margin_se",
            "network_sd", "seed_sd", "fastest_acc", *(["confirm_margin", "confirm_margin_se"] if args.confirm_seeds
                                                      else []), "seconds"],
           rows, args.out,
           {"quick": args.quick, "share": args.share, "search_epochs": search_epochs,
            "warmup_epochs": base.warmup_epochs, "train_epochs": train_epochs, "train_lr": args.train_lr,
            "train_batch_size": args.train_batch_size,
            "train_warmup_epochs": trained.train.warmup_epochs,
            "train_zero_init_residual": trained.train.zero_init_residual,
            "seeds": seeds,
            "confirm_seeds": args.confirm_seeds,
            "candidates": {s: candidates_to_select(s, args.candidates) for s in args.strategies},
            "searches": args.searches, "params": extra_params, "data": args.data, "train_limit": args.train_limit,
            "search_limit": args.search_limit or args.train_limit,
            "resolution": args.resolution,
            "seed": args.seed, "lut": str(lut)})


if __name__ == "__main__":
    main()
