"""How a strategy turns architecture parameters into the weights a mixed layer forwards with.

Every sampler takes an explicit `torch.Generator`: strategies seed it identically on every rank, so all ranks
sample the same paths and their architecture parameters stay identical under data parallelism.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gumbel_noise(shape: torch.Size | tuple[int, ...], generator: torch.Generator,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard Gumbel samples g = -log(-log U), U ~ Uniform(0, 1)."""
    uniform = torch.rand(shape, generator=generator, dtype=dtype).clamp_(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(uniform))


def gumbel_softmax(logits: torch.Tensor, tau: float, generator: torch.Generator,
                   hard: bool = False) -> tuple[torch.Tensor, int | torch.Tensor]:
    """Gumbel-softmax relaxation (Jang et al. 2017; FBNet Eq. 3.35-3.36 of the thesis): soft weights, or a one-hot
    sample with the straight-through gradient of the soft weights when `hard`. Returns (weights, argmax index).
    """
    noisy = (logits + gumbel_noise(logits.shape, generator, logits.dtype).to(logits.device)) / tau
    soft = F.softmax(noisy, dim=-1)
    index = soft.argmax(dim=-1)
    if not hard:
        return soft, index
    one_hot = F.one_hot(index, logits.shape[-1]).to(soft.dtype)
    return one_hot - soft.detach() + soft, index


def straight_through(probs: torch.Tensor, index: int) -> torch.Tensor:
    """One-hot at `index` whose gradient is the gradient of `probs` (straight-through estimator)."""
    one_hot = F.one_hot(torch.tensor(index), probs.shape[-1]).to(probs.dtype)
    return one_hot - probs.detach() + probs


def sample_index(probs: torch.Tensor, generator: torch.Generator) -> int:
    """One index drawn with probabilities `probs` (K,)."""
    return int(torch.multinomial(probs.detach().float().cpu(), 1, generator=generator))


def sample_without_replacement(probs: torch.Tensor, count: int, generator: torch.Generator) -> list[int]:
    """`count` distinct indices drawn with probabilities `probs` (ProxylessNAS samples two paths this way)."""
    count = min(count, int((probs > 0).sum()))
    return [int(i) for i in torch.multinomial(probs.detach().float().cpu(), count, replacement=False,
                                              generator=generator)]


def uniform_index(size: int, generator: torch.Generator) -> int:
    return int(torch.randint(0, size, (1,), generator=generator))
