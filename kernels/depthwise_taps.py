"""The mixed depthwise stage as one depthwise convolution over the union of the candidates' taps.

Σ_k a_k · dwconv(x, W_k, dilation d_k) is linear in the kernels, and with odd kernel sizes and 'same' padding
every candidate's tap (i, j) lands on the input offset ((i - (k-1)/2)·d, (j - (k-1)/2)·d). Summing a_k · W_k into
those offsets gives one kernel over the union of offsets (3/5/7 share the 3x3 centre; dilated taps interleave), so
the input is read once and no candidate output exists. The combination is tiny (C x taps, or N x C x taps for
per-sample Gumbel weights) and plain PyTorch, so autograd carries its gradient back to the kernels and to a_k.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hwnas.kernels.reference import candidate_kernel


@dataclass(frozen=True)
class TapSet:
    """The union of the candidates' input offsets, row-major, and where each candidate's taps sit in it."""

    radius: int
    offsets: tuple[tuple[int, int], ...]
    positions: tuple[tuple[int, ...], ...]  # candidate k's k×k taps (row-major) as indices into `offsets`

    @property
    def size(self) -> int:
        return 2 * self.radius + 1

    def offsets_tensor(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(dy, dx) as int32 vectors on `device`: the kernels read them per tap."""
        dy, dx = zip(*self.offsets)
        return (torch.tensor(dy, dtype=torch.int32, device=device),
                torch.tensor(dx, dtype=torch.int32, device=device))

    def dense_index(self) -> list[int]:
        """Each tap's flat index in the dense (2r+1)x(2r+1) kernel."""
        return [(dy + self.radius) * self.size + dx + self.radius for dy, dx in self.offsets]


@functools.cache
def tap_set(kernel_sizes: tuple[int, ...], dilations: tuple[int, ...]) -> TapSet:
    """Taps of candidates with these odd kernel sizes and dilations, centred on the output pixel."""
    per_candidate = []
    for size, dilation in zip(kernel_sizes, dilations):
        half = (size - 1) // 2
        per_candidate.append([((i - half) * dilation, (j - half) * dilation) for i in range(size) for j in range(size)])
    offsets = tuple(sorted({offset for taps in per_candidate for offset in taps}))
    where = {offset: index for index, offset in enumerate(offsets)}
    radius = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    return TapSet(radius, offsets, tuple(tuple(where[o] for o in taps) for taps in per_candidate))


def combined_taps(weight: torch.Tensor | Sequence[torch.Tensor], arch_weights: torch.Tensor,
                  kernel_sizes: Sequence[int], taps: TapSet) -> torch.Tensor:
    """Σ_k a_k · W_k placed on the union taps, in fp32: (C, T) for (K,) weights, (N, C, T) for (N, K)."""
    placed = []
    for k in range(len(kernel_sizes)):
        kernel = candidate_kernel(weight, k, kernel_sizes).float()
        channels = kernel.shape[0]
        index = torch.tensor(taps.positions[k], device=kernel.device)
        placed.append(kernel.new_zeros(channels, len(taps.offsets)).index_add(1, index, kernel.reshape(channels, -1)))
    return torch.einsum("...k,kct->...ct", arch_weights.float(), torch.stack(placed))


def dense_kernel(compact: torch.Tensor, taps: TapSet) -> torch.Tensor:
    """(..., C, T) taps -> (..., C, 1, S, S) dense depthwise kernel, zeros where no candidate has a tap."""
    size = taps.size
    index = torch.tensor(taps.dense_index(), device=compact.device)
    dense = compact.new_zeros(*compact.shape[:-1], size * size).index_add(-1, index, compact)
    return dense.reshape(*compact.shape[:-1], 1, size, size)


def output_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """'Same' padding with odd kernels: ceil(H / stride) x ceil(W / stride), as F.conv2d gives."""
    return (height - 1) // stride + 1, (width - 1) // stride + 1
