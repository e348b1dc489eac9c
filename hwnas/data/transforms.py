"""The few image transforms a search needs, written in torch (torchvision has no CPU build on these machines)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) uint8 or float -> float (N, C, size, size), bilinear with antialiasing when shrinking."""
    x = images.float()
    if x.shape[-2:] == (size, size):
        return x
    shrinking = x.shape[-1] > size or x.shape[-2] > size
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=shrinking)


def affine_warp(images: torch.Tensor, angle: torch.Tensor, scale: torch.Tensor, shear: torch.Tensor,
                shift: torch.Tensor) -> torch.Tensor:
    """Per-image affine warp of float (N, C, H, W): rotation (radians), zoom, horizontal shear and shift (in units
    of half the image); what falls outside is zero."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    forward = torch.stack([torch.stack([cos, -sin + shear * cos], -1), torch.stack([sin, cos + shear * sin], -1)], -2)
    forward = forward * scale.view(-1, 1, 1)
    inverse = torch.linalg.inv(forward)
    theta = torch.cat([inverse, -(inverse @ shift.unsqueeze(-1))], -1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round().clamp(0, 255).to(torch.uint8)


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float, scaled to [0, 1] then standardised per channel: (x / 255 - mean) / std, as one
    scale and one shift on a new tensor."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(1, -1, 1, 1)
    offset = torch.tensor([m / s for m, s in zip(mean, std)]).view(1, -1, 1, 1)
    return images.to(torch.float32, copy=True).mul_(scale).sub_(offset)


def random_shift(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding by `pad` (the CIFAR recipe): each image moves by up to `pad` pixels."""
    if pad <= 0:
        return images
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (N, H)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (N, W)
    batch = torch.arange(n).view(n, 1, 1)
    # gather (N, C, H, W): index padded[n, :, rows[n, i], cols[n, j]]
    out = padded.permute(0, 2, 3, 1)[batch, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    out[flip] = images[flip].flip(-1)
    return out


def prepare(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...], shift: int, flip: bool,
            generator: torch.Generator | None) -> torch.Tensor:
    """A uint8 batch as the network sees it: with a generator, randomly shifted by up to `shift` pixels (and
    flipped where `flip`), then normalised. In memory and streamed splits alike."""
    if generator is not None and shift:
        images = random_shift(images, shift, generator)
        if flip:
            images = random_hflip(images, generator)
    return normalize(images, mean, std)
