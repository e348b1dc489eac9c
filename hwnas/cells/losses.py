"""Loss terms of the DARTS family, each a small pure function named after its paper equation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch


def zero_one_loss(alphas: Iterable[torch.Tensor]) -> torch.Tensor:
    """FairDARTS zero-one loss (thesis `ddarts-thesis.txt` Eq. 3.1; Chu et al. 2020 Eq. 5):
    L_01 = −(1/N) Σ_i (σ(α_i) − 0.5)², the mean over all N architecture weights; minimising it pushes each
    sigmoid weight away from 0.5, towards 0 or 1."""
    values = torch.cat([torch.sigmoid(a).reshape(-1) for a in alphas])
    return -((values - 0.5) ** 2).mean()


def fair_loss(task: torch.Tensor, alphas: Iterable[torch.Tensor], w01: float) -> torch.Tensor:
    """FairDARTS total loss (thesis Eq. 3.2): L_F = L_val + w_01 · L_01 (FairDARTS uses w_01 = 10; the thesis
    reports 8 in Sec. 4.2.1 and 7 in Sec. 4.2.2, hence a parameter)."""
    return task + w01 * zero_one_loss(alphas)


def marginal_contributions(full_loss: torch.Tensor, ablated_losses: Sequence[torch.Tensor]) -> torch.Tensor:
    """D-DARTS marginal contributions (thesis Eq. 4.2): M_C^i = L_CE^(C) − L_CE^(C \\ {C_i}), the cross-entropy
    of the whole supernet minus the one with cell i deactivated (a negative value: the cell lowers the loss)."""
    return torch.stack([full_loss - ablated for ablated in ablated_losses])


def ablation_loss(contributions: torch.Tensor) -> torch.Tensor:
    """D-DARTS ablation loss per cell (thesis Eq. 4.3): L_AB^i = (M_C^i − mean(M_C)) / mean(M_C), or 0 for every
    cell when mean(M_C) = 0."""
    mean = contributions.mean()
    if float(mean.detach()) == 0.0:
        return torch.zeros_like(contributions)
    return (contributions - mean) / mean


def ddarts_total_loss(task: torch.Tensor, cell_alpha: torch.Tensor, ablation: torch.Tensor, *, w01: float,
                      w_ab: float) -> torch.Tensor:
    """D-DARTS total loss of cell i (thesis Eqs. 4.4-4.5, Algorithm 1): L_T^i = L_CE + w_01 · L_01^i + w_AB · L_AB^i,
    with L_01^i over cell i's own architecture weights (thesis: w_AB = 0.5; w_01 = 8 or 7, see `fair_loss`)."""
    return task + w01 * zero_one_loss([cell_alpha]) + w_ab * ablation


def weight_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Mean per-edge entropy (nats) of [edges, ops] architecture weights, each row normalised to sum to 1: the
    diagnostic of how decided a cell is (log K when uniform, 0 when one-hot)."""
    p = weights.detach().to(torch.float64)
    p = p / p.sum(-1, keepdim=True).clamp_min(1e-12)
    return -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
