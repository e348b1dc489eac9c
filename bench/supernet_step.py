"""Time and memory of one supernet training step per strategy, against an all-paths weighted-sum supernet of the
same space (every candidate computed and kept for backward, as DARTS does).

Memory is the activation memory autograd keeps for the backward pass (peak bytes of the distinct tensors saved at
once, weights excluded), overall and inside the searchable layers, plus the CUDA peak on a GPU. Path sampling must
keep the searchable layers' activations within 2/K of all-paths. K differs between layers (a stage's first layer
has no skip), so the bound is 2/K_l per layer weighted by that layer's all-paths memory; and a sampled step's
memory depends on which paths it drew, so it is the mean over --samples steps.

    python bench/supernet_step.py                 # each strategy on its paper's space, 64 px, batch 32
    python bench/supernet_step.py --quick         # tiny spaces, 32 px, batch 16 (~1 min on a CPU)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from search_common import bench_space, measured_model, report

from hwnas.budget.costs import space_range_ms
from hwnas.spaces.dense import DenseSpace
from hwnas.strategies import SearchProblem, StepContext, make_strategy
from hwnas.supernet import ChainSupernet, Selection
from hwnas.supernet.dense import DenseSupernet

MODES = {  # label -> (strategy, its parameters)
    "fbnet (soft, paper)": ("fbnet", {}),
    "fbnet (hard)": ("fbnet", {"hard": True}),
    "proxyless (masked)": ("proxyless", {}),
    "proxyless (paths)": ("proxyless", {"masked": False}),
    "hardcore (masked)": ("hardcore", {}),
    "hardcore (paths)": ("hardcore", {"masked": False}),
    "densenas (masked)": ("densenas", {}),
    "densenas (paths)": ("densenas", {"masked": False}),
}


class SavedActivations:
    """Peak bytes of the distinct tensors autograd holds for backward at once (parameters excluded), overall and of
    those saved while a searchable layer runs. A peak, not a sum: a step that frees one sample's graph before the
    next (HardCoRe-NAS's several samples per architecture step) holds one graph at a time."""

    def __init__(self, params: list[torch.Tensor], searchable: list[torch.nn.Module]):
        self.params = {p.untyped_storage().data_ptr() for p in params}
        self.searchable = searchable
        self.active: list[int] = []  # indices into `searchable` of the layers running now, innermost last
        self.per_layer = [0] * len(searchable)  # bytes first saved inside each layer
        self.holders: dict[int, int] = {}  # storage -> packed references alive
        self.sizes: dict[int, tuple[int, bool]] = {}  # storage -> (bytes, saved inside a searchable layer)
        self.live = self.live_inside = self.total = self.inside = 0

    def _pack(self, tensor: torch.Tensor) -> Any:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if not key or key in self.params:
            return tensor
        if not self.holders.get(key):
            self.sizes[key] = (storage.nbytes(), False)
            self._add(storage.nbytes(), 0)
        if self.active and not self.sizes[key][1]:  # saved inside a searchable layer too (e.g. its input)
            self.sizes[key] = (storage.nbytes(), True)
            self._add(0, storage.nbytes())
            self.per_layer[self.active[0]] += storage.nbytes()
        self.holders[key] = self.holders.get(key, 0) + 1
        return _Saved(tensor.detach(), key, self)  # detached: an output saved with its grad_fn is a cycle

    def release(self, key: int) -> None:
        self.holders[key] -= 1
        if not self.holders[key]:
            nbytes, inside = self.sizes[key]
            self._add(-nbytes, -nbytes if inside else 0)

    def _add(self, total: int, inside: int) -> None:
        self.live += total
        self.live_inside += inside
        self.total, self.inside = max(self.total, self.live), max(self.inside, self.live_inside)

    def _enter(self, index: int) -> None:
        self.active.append(index)

    def _leave(self) -> None:  # a forward hook's return value would replace the layer's output
        self.active.pop()

    @contextmanager
    def watch(self):
        handles = []
        for index, module in enumerate(self.searchable):
            handles.append(module.register_forward_pre_hook(lambda *_, i=index: self._enter(i)))
            handles.append(module.register_forward_hook(lambda *_: self._leave()))
        try:
            with torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack):
                yield self
        finally:
            for handle in handles:
                handle.remove()


class _Saved:
    """A tensor autograd keeps for backward; tells its counter when autograd lets go of it."""

    __slots__ = ("tensor", "key", "counter")

    def __init__(self, tensor: torch.Tensor, key: int, counter: SavedActivations):
        self.tensor, self.key, self.counter = tensor, key, counter

    def __del__(self) -> None:
        self.counter.release(self.key)


def _unpack(saved: Any) -> torch.Tensor:
    return saved.tensor if isinstance(saved, _Saved) else saved


def searchable_modules(net: torch.nn.Module) -> list[torch.nn.Module]:
    if isinstance(net, DenseSupernet):
        return [*net.edges, *(layer for block in net.blocks for layer in block)]
    return list(net.layers)


def measure(step: Callable[[], torch.Tensor | None], net: torch.nn.Module, repeats: int, samples: int,
            device: torch.device) -> dict[str, Any]:
    """Median seconds of `step` (forward + backward) over `repeats` timed runs, then what it saves for backward:
    the mean over `samples` further runs (hooks slow them down a little, so they are not timed)."""
    times, counters = [], []
    for index in range(1 + repeats + samples):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        if index > repeats:
            counters.append(SavedActivations(list(net.parameters()), searchable_modules(net)))
            with counters[-1].watch():
                loss = step()
        else:
            loss = step()
        if loss is not None:
            loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if 0 < index <= repeats:
            times.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
    result = {"step_s": statistics.median(times) if times else float("nan"),
              "saved_mb": statistics.mean(c.total for c in counters) / 2**20,
              "layers_mb": statistics.mean(c.inside for c in counters) / 2**20,
              "layers_mb_max": max(c.inside for c in counters) / 2**20,
              "per_layer_mb": [statistics.mean(c.per_layer[i] for c in counters) / 2**20
                               for i in range(len(counters[0].per_layer))]}
    if device.type == "cuda":
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def two_paths_bound(base: dict[str, Any]) -> float:
    """Two of K_l paths per searchable layer, as a share of all paths: Σ_l (2/K_l)·m_l / Σ_l m_l, with m_l what
    layer l saves in the all-paths step (for equal K this is 2/K)."""
    memory = base["per_layer_mb"]
    return sum(min(1.0, 2 / k) * m for k, m in zip(base["k_per_layer"], memory)) / sum(memory)


def all_paths_step(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], torch.Tensor]:
    """The baseline: a weighted sum over every candidate of every layer (and every routing path)."""
    generator = torch.Generator().manual_seed(0)

    def weights(size: int) -> torch.Tensor:
        return F.softmax(torch.randn(size, generator=generator), 0).to(x.device).requires_grad_(True)

    if isinstance(net, DenseSupernet):
        edges = [Selection(weights(len(e))) for e in net.edges]
        layers = [[Selection(weights(len(layer))) for layer in block] for block in net.blocks]
        probs = torch.full((len(net.edges),), 0.5, device=x.device)
        return lambda: F.cross_entropy(net(x, edges, layers, probs), y)
    selections = [Selection(weights(len(layer))) for layer in net.layers]
    return lambda: F.cross_entropy(net(x, selections), y)


def measure_strategy(label: str, space: Any, model: Any, x: torch.Tensor, y: torch.Tensor, base: dict[str, Any],
                     repeats: int, samples: int, device: torch.device) -> list[dict[str, Any]]:
    """Weight step and architecture step of one strategy, against the all-paths baseline `base`."""
    name, params = MODES[label]
    low, high = space_range_ms(space, model)
    torch.manual_seed(0)
    strategy = make_strategy(name, SearchProblem(space, model, (low + high) / 2, seed=0), params)
    strategy.supernet.to(device)
    strategy.start_epoch(1, 2, warmup=False)
    ctx = StepContext((x, y), torch.optim.SGD(strategy.weight_parameters(), lr=0.01), 0.01, 1, 0)

    def arch_step() -> None:
        for p in strategy.arch_parameters():
            p.grad = None
        strategy.arch_backward(x, y, ctx)

    rows = []
    for step, run in (("weights", lambda: strategy.weight_loss(x, y).loss), ("architecture", arch_step)):
        measured = measure(run, strategy.supernet, repeats, samples, device)
        ratio = measured["layers_mb"] / base["layers_mb"] if base["layers_mb"] else float("nan")
        bound = two_paths_bound(base)
        rows.append({"space": space.name, "mode": label, "step": step, **measured, "k": base["k"],
                     "layers_vs_all": ratio, "two_over_k": bound, "within_2_over_k": ratio <= bound})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny spaces, 32 px, batch 16, 2 repeats")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    parser.add_argument("--resolution", type=int, default=None, help="default 64 (quick: 32)")
    parser.add_argument("--batch", type=int, default=None, help="default 32 (quick: 16)")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps (default 5; quick 2)")
    parser.add_argument("--samples", type=int, default=None, help="steps whose saved memory is averaged (each "
                        "draws its own paths; default 5, quick 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lut", type=Path, default=None, help="LUT for the strategies' latency terms (default: a "
                        "temporary one measured with quick settings: the latencies do not enter these timings)")
    parser.add_argument("--out", type=Path, default=Path("bench/results/supernet_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    resolution = args.resolution or (32 if args.quick else 64)
    batch = args.batch or (16 if args.quick else 32)
    repeats = args.repeats or (2 if args.quick else 5)
    samples = args.samples or (2 if args.quick else 5)
    device = torch.device(args.device)
    lut = args.lut or Path(tempfile.mkdtemp(prefix="hwnas-bench-")) / "cpu.csv"
    strategies = sorted({MODES[m][0] for m in args.modes})
    spaces = {s: bench_space(s, args.quick, resolution) for s in strategies}
    model = measured_model(lut, list({id(s): s for s in spaces.values()}.values()), "cpu", quick=True)
    x = torch.randn(batch, 3, resolution, resolution, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    rows, baselines = [], {}
    for label in args.modes:
        space = spaces[MODES[label][0]]
        if space.name not in baselines:
            torch.manual_seed(0)
            net = (DenseSupernet(space) if isinstance(space, DenseSpace) else ChainSupernet(space)).to(device)
            layers = searchable_modules(net)
            baselines[space.name] = {**measure(all_paths_step(net, x, y), net, repeats, samples, device),
                                     "k": max(len(layer) for layer in layers),
                                     "k_per_layer": [len(layer) for layer in layers]}
            rows.append({"space": space.name, "mode": "all paths (weighted sum)", "step": "forward+backward",
                         **baselines[space.name]})
            del net
        rows.extend(measure_strategy(label, space, model, x, y, baselines[space.name], repeats, samples, device))
    report(f"one supernet step, batch {batch}, {resolution} px, {device}; memory: mean of {samples} steps",
           ["space", "mode", "step", "step_s", "saved_mb", "layers_mb", "layers_mb_max", "cuda_peak_mb", "k",
            "layers_vs_all", "two_over_k", "within_2_over_k"], rows, args.out,
           {"quick": args.quick, "resolution": resolution, "batch": batch, "device": str(device),
            "repeats": repeats, "samples": samples, "threads": args.threads})


if __name__ == "__main__":
    main()
