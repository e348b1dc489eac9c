"""Does a supernet train when each step samples one path? Separate candidate weights against shared ones.

One-path strategies (ProxylessNAS, DenseNAS, FBNet with -p hard=true, HardCoRe-NAS) train their supernet one
sampled path per step. For each space this trains the supernet from the same initialisation several ways and scores
single paths on the validation split (batch norm re-estimated for each path): one fixed path with separate weights
(a plain network: what training can reach), a uniformly random path per step with separate weights (the papers'
ProxylessNAS and DenseNAS), the same with random paths only at the residual layers (each stage's first layer
fixed), and a random path per step with weights shared between the candidates of a layer (channel masks and a
superkernel, `masked`; not possible where a layer's candidates differ in groups or skip). Each runs with unit
batch-norm scales and with residual branches started as the identity (`init zero`, what `hwnas search` does).
Where random paths stay near chance (0.1 on 10 classes) while a fixed path trains, the strategies' architecture
gradients would learn from noise.

    python bench/one_path_training.py --quick     # digits, 60 steps per run (~8 min on 2 CPU cores)
    python bench/one_path_training.py --data fashion-mnist-folder --train-limit 6000 --threads 2
"""

from __future__ import annotations

import argparse
import itertools
import random
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from search_common import report

from hwnas.data import load_splits
from hwnas.ops import zero_init_residual_branches
from hwnas.spaces.files import resolve_space
from hwnas.supernet import ChainSupernet, MaskedInvertedResidual
from hwnas.training import make_weight_optimizer, recalibrated_hits

RUNS = (("separate", "fixed"), ("separate", "random"), ("separate", "random-residual"), ("shared", "random"))
INITS = ("unit", "zero")
SCORED_PATHS = 4


def draw_path(net: ChainSupernet, sampling: str, fixed: list[int], rng: random.Random) -> list[int]:
    """One path: `fixed` where the sampling keeps a position fixed, a uniform draw elsewhere."""
    return [rng.randrange(len(layer)) if sampling == "random" or (sampling == "random-residual" and position.layer > 0)
            else choice for layer, position, choice in zip(net.layers, net.positions, fixed)]


def train_supernet(net: ChainSupernet, splits: dict[str, Any], steps: int, batch: int, sampling: str,
                   rng: random.Random) -> tuple[list[int], float, float]:
    """`steps` SGD steps (the search's weight optimizer and clipping); the fixed path (what positions that are not
    sampled keep), mean loss and train accuracy over the last fifth of the steps."""
    optimizer = make_weight_optimizer(net.parameters(), 0.05, 0.9, 4e-5)
    fixed = [rng.randrange(len(layer)) for layer in net.layers]
    losses, hits, epoch = [], [], 0
    while len(losses) < steps:
        for x, y in splits["train_weights"].batches(batch, seed=0, epoch=epoch):
            choices = draw_path(net, sampling, fixed, rng)
            logits = net.forward_choices(x, choices)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            hits.append(float((logits.detach().argmax(1) == y).float().mean()))
            if len(losses) == steps:
                break
        epoch += 1
    tail = max(1, steps // 5)
    return fixed, sum(losses[-tail:]) / tail, sum(hits[-tail:]) / tail


def path_accuracy(net: ChainSupernet, splits: dict[str, Any], choices: list[int], batch: int) -> float:
    correct, seen = recalibrated_hits(
        net, lambda x: net.forward_choices(x, choices), splits["train_weights"].batches(batch, augment=False),
        splits["val"].batches(256, shuffle=False, augment=False, drop_last=False), torch.device("cpu"))
    return correct / max(seen, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="60 steps per run on 1200 digits images")
    parser.add_argument("--data", default="digits", help="digits, digits-hard (embedded), cifar10:PATH, a folder")
    parser.add_argument("--spaces", nargs="+", default=["fbnet", "proxyless", "hardcore"])
    parser.add_argument("--steps", type=int, default=None, help="weight steps per run (default 400, quick 60)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--train-limit", type=int, default=0, help="at most N training images (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/one_path_training.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or (60 if args.quick else 400)
    splits = load_splits(args.data, args.resolution, ("train_weights", "val"),
                         train_limit=1200 if args.quick else args.train_limit)
    rows = []
    for space_name in args.spaces:
        space = resolve_space(space_name, args.resolution, splits["val"].num_classes)
        for (weights, sampling), init in itertools.product(RUNS, INITS):
            torch.manual_seed(0)
            rng = random.Random(0)
            net = ChainSupernet(space, masked=weights == "shared")
            if init == "zero":
                zero_init_residual_branches(net)
            shared_layers = sum(isinstance(layer, MaskedInvertedResidual) for layer in net.layers)
            if weights == "shared" and not shared_layers:
                rows.append({"space": space_name, "weights": weights, "sampling": sampling, "init": init,
                             "note": "no layer can share weights"})
                continue
            start = time.perf_counter()
            fixed, loss, train_acc = train_supernet(net, splits, steps, args.batch, sampling, rng)
            paths = [fixed] if sampling == "fixed" else \
                [draw_path(net, sampling, fixed, rng) for _ in range(SCORED_PATHS)]
            accuracies = [path_accuracy(net, splits, choices, args.batch) for choices in paths]
            rows.append({"space": space_name, "weights": weights, "sampling": sampling, "init": init,
                         "shared_layers": f"{shared_layers}/{len(net.layers)}", "steps": steps,
                         "train_loss": loss, "train_acc": train_acc,
                         "path_val_acc": sum(accuracies) / len(accuracies), "path_val_acc_min": min(accuracies),
                         "seconds": time.perf_counter() - start})
    report(f"one sampled path per step, {steps} steps of batch {args.batch}, {args.data} at {args.resolution} px; "
           f"validation accuracy of {SCORED_PATHS} paths drawn as in training (the fixed one for 'fixed')",
           ["space", "weights", "sampling", "init", "shared_layers", "train_loss", "train_acc", "path_val_acc",
            "path_val_acc_min", "seconds", "note"], rows, args.out,
           {"quick": args.quick, "data": args.data, "steps": steps, "batch": args.batch,
            "resolution": args.resolution, "train_limit": args.train_limit, "threads": args.threads})


if __name__ == "__main__":
    main()
