"""Images per second delivered to a training step: the streaming loader (DataLoader workers decoding JPEGs, and
the same from the on-disk cache of decoded images) against the in-memory path on CIFAR-10 as a JPEG folder; and
the peak memory of streaming a large folder at 224 px (generated under /tmp: `--distinct` real JPEGs, the rest
hard links to them, so every file is decoded but the disk holds few).

Each case runs in a fresh process; its memory is sampled from /proc every 0.1 s over the process and its
DataLoader workers: PSS (shared pages counted once, the tree's true footprint) and the plain sum of RSS.

    mkdir -p /tmp/cifar10 && tar xzf ../shared/datasets/cifar10-jpeg.tar.gz -C /tmp/cifar10
    python bench/data_throughput.py --cifar /tmp/cifar10 --big-count 100000
    python bench/data_throughput.py --cifar /tmp/cifar10 --train-limit 2000 --big-count 2000   # a quick check
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from search_common import report

COLUMNS = ("case", "source", "resolution", "loader", "workers", "images", "load_s", "images_per_s", "peak_pss_gb",
           "peak_rss_sum_gb", "main_rss_gb")


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (DataLoader workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo += children.get(current, [])
    return found


def _kb(path: str, field: str) -> int:
    try:
        with open(path) as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemorySampler:
    """Peak PSS and RSS sums over a process tree, sampled in a thread."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.peak_pss = self.peak_rss = self.peak_main = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            pids = _tree(self.pid)
            self.peak_pss = max(self.peak_pss, sum(_kb(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))
            self.peak_rss = max(self.peak_rss, sum(_kb(f"/proc/{p}/status", "VmRSS:") for p in pids))
            self.peak_main = max(self.peak_main, _kb(f"/proc/{self.pid}/status", "VmRSS:"))
            self.stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def _case(queue, source: str, resolution: int, options: dict[str, Any], batch_size: int, max_batches: int) -> None:
    """In a fresh process: load the weight-training split, then draw one epoch (at most `max_batches`) of
    augmented batches as the search loop does; report the load time and the delivered images per second."""
    import torch

    from hwnas.data import load_splits

    torch.set_num_threads(1)
    start = time.perf_counter()
    split = load_splits(source, resolution, ("train_weights",), **options)["train_weights"]
    loaded = time.perf_counter() - start
    seen, start = 0, time.perf_counter()
    for step, (_, y) in enumerate(split.batches(batch_size, seed=0, epoch=0)):
        seen += len(y)
        if max_batches and step + 1 >= max_batches:
            break
    seconds = time.perf_counter() - start
    queue.put({"loader": type(split).__name__, "images": seen, "load_s": loaded, "images_per_s": seen / seconds})


def run_case(name: str, source: str, resolution: int, options: dict[str, Any], batch_size: int,
             max_batches: int = 0) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_case, args=(queue, source, resolution, options, batch_size, max_batches))
    process.start()
    with MemorySampler(process.pid) as memory:
        result = queue.get()
        process.join()
    return {"case": name, "source": source, "resolution": resolution, "workers": options.get("workers", 0),
            **result, "peak_pss_gb": memory.peak_pss / 1e6, "peak_rss_sum_gb": memory.peak_rss / 1e6,
            "main_rss_gb": memory.peak_main / 1e6}


def make_folder(root: Path, count: int, resolution: int, distinct: int, classes: int = 10) -> Path:
    """`count` JPEGs at `resolution` in `classes` class folders: `distinct` smooth random pictures, the rest hard
    links to them. Reused when a finished one is there."""
    from PIL import Image

    marker = root / f".complete-{count}-{resolution}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(0)
    originals = []
    for i in range(min(distinct, count)):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        picture = Image.fromarray(coarse).resize((resolution, resolution), Image.BICUBIC)
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{i:07d}.jpg"
        picture.save(path, quality=90)
        originals.append(path)
    for i in range(len(originals), count):
        path = root / f"class{i % classes}" / f"{i:07d}.jpg"
        try:
            os.link(originals[i % len(originals)], path)
        except OSError:
            shutil.copyfile(originals[i % len(originals)], path)
    marker.touch()
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar", default="/tmp/cifar10", help="CIFAR-10 as a JPEG folder (train/CLASS, test/CLASS)")
    parser.add_argument("--resolution", type=int, default=32, help="CIFAR-10 search resolution")
    parser.add_argument("--train-limit", type=int, default=0, help="CIFAR-10 training images (0: all 50,000)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the streaming cases")
    parser.add_argument("--big-count", type=int, default=100_000, help="images of the generated folder (0: skip)")
    parser.add_argument("--big-resolution", type=int, default=224)
    parser.add_argument("--big-root", type=Path, default=Path(tempfile.gettempdir()) / "hwnas-stream-folder")
    parser.add_argument("--distinct", type=int, default=500, help="distinct pictures of the generated folder")
    parser.add_argument("--big-batches", type=int, default=0, help="batches streamed from it (0: one whole epoch)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "hwnas-bench-cache")
    parser.add_argument("--out", type=Path, default=Path("bench/results/data_throughput.json"))
    args = parser.parse_args()

    cifar = {"train_limit": args.train_limit}
    rows = [run_case("cifar10 in memory", args.cifar, args.resolution, {**cifar, "loader": "memory",
                                                                        "workers": args.workers}, args.batch_size),
            run_case("cifar10 streamed", args.cifar, args.resolution, {**cifar, "loader": "stream",
                                                                       "workers": args.workers}, args.batch_size)]
    shutil.rmtree(args.cache, ignore_errors=True)
    cached = {**cifar, "loader": "stream", "workers": args.workers, "cache": str(args.cache)}
    rows.append(run_case("cifar10 streamed, cache built", args.cifar, args.resolution, cached, args.batch_size))
    rows.append(run_case("cifar10 streamed from the cache", args.cifar, args.resolution, cached, args.batch_size))
    if args.big_count:
        start = time.perf_counter()
        folder = make_folder(args.big_root, args.big_count, args.big_resolution, args.distinct)
        print(f"{folder}: {args.big_count} images at {args.big_resolution} px ready in "
              f"{time.perf_counter() - start:.0f} s")
        rows.append(run_case(f"{args.big_count} images streamed", str(folder), args.big_resolution,
                             {"loader": "stream", "workers": args.workers}, args.batch_size, args.big_batches))
    report("Images per second delivered to a training step", COLUMNS, rows, args.out,
           {"batch_size": args.batch_size, "train_limit": args.train_limit, "big_count": args.big_count,
            "big_batches": args.big_batches, "distinct": args.distinct,
            "note": "load_s: load_splits of the weight-training split (decoding, or listing and channel statistics); "
                    "images_per_s: one epoch of augmented, normalised batches, no model; memory: the process and its "
                    "DataLoader workers"})


if __name__ == "__main__":
    main()
