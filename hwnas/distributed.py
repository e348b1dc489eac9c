"""Data parallelism (`torchrun --nproc_per_node N`): every rank holds the whole supernet and sees its shard of
every batch order; after each backward the trainer averages gradients with `all_reduce` (weights, then
architecture parameters) so every rank applies the same update. This is what DistributedDataParallel does, done
explicitly because sampled subnetworks leave parameters unused in a step and architecture steps need the same
reduction. Architecture parameters are compared across ranks at the end of a search.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn

from hwnas.errors import HwnasError

if TYPE_CHECKING:
    from hwnas.strategies.base import Strategy


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def resolve_device(name: str, ranks: Ranks | None = None) -> torch.device:
    """`auto` -> this rank's GPU when CUDA is available, else the CPU; otherwise the torch device named."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HwnasError(f"torch_device '{name}': expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise HwnasError(f"torch_device '{name}': this torch has no CUDA device; use cpu or auto")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def _reduce_device() -> torch.device:
    """Where collectives run: NCCL reduces CUDA tensors only, gloo CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init_ranks(backend: str | None = None) -> Ranks:
    """Join the process group torchrun set up (WORLD_SIZE > 1), gloo on CPU and nccl on CUDA."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return Ranks(dist.get_rank(), dist.get_world_size())


def average_gradients(params: Iterable[torch.Tensor], ranks: Ranks) -> None:
    """Average `.grad` over ranks in one flat all_reduce (parameters without a gradient are left out: all ranks
    sample the same paths, so they agree on which those are)."""
    if not ranks.enabled:
        return
    grads = [p.grad for p in params if p.grad is not None]
    for grad, mean in zip(grads, mean_over_ranks(grads, ranks.world)):
        grad.copy_(mean)


def mean_over_ranks(tensors: Sequence[torch.Tensor], world: int) -> list[torch.Tensor]:
    """Each tensor's element-wise mean over the `world` ranks, in one flat all_reduce; new tensors, on the inputs'
    devices."""
    if not tensors:
        return []
    device = _reduce_device()
    flat = torch.cat([t.detach().reshape(-1).to(device) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    means, offset = [], 0
    for t in tensors:
        means.append(flat[offset: offset + t.numel()].view_as(t).to(t.device))
        offset += t.numel()
    return means


def broadcast_state(module: nn.Module, ranks: Ranks) -> None:
    """Rank 0's parameters and buffers to every rank (start of run; BatchNorm statistics each epoch)."""
    if ranks.enabled:
        device = _reduce_device()
        for tensor in [*module.parameters(), *module.buffers()]:
            staged = tensor.data.to(device)
            dist.broadcast(staged, 0)
            tensor.data.copy_(staged)


def check_arch_identical(strategy: Strategy, ranks: Ranks) -> bool:
    """True when every rank holds bit-identical architecture parameters."""
    if not ranks.enabled:
        return True
    device = _reduce_device()
    local = torch.cat([p.detach().reshape(-1).double().to(device) for p in strategy.arch_parameters()]
                      or [torch.zeros(1, device=device)])
    gathered = [torch.empty_like(local) for _ in range(ranks.world)]
    dist.all_gather(gathered, local)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def sum_over_ranks(values: Sequence[float], ranks: Ranks) -> list[float]:
    if not ranks.enabled:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_reduce_device())
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def averaged_over_ranks(grads: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """Each tensor averaged over the ranks of a data-parallel run (unchanged in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return grads
    return dict(zip(grads, mean_over_ranks(list(grads.values()), dist.get_world_size())))
