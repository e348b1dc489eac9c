"""Loss terms of the DARTS family on hand-computed values: FairDARTS' zero-one loss (thesis Eq. 3.1), D-DARTS'
marginal contributions and ablation loss (Eqs. 4.2-4.3), SP-DARTS' mixture schedule (Eq. 20)."""

import math

import pytest
import torch

from hwnas.cells.losses import (
    ablation_loss,
    ddarts_total_loss,
    fair_loss,
    marginal_contributions,
    weight_entropy,
    zero_one_loss,
)
from hwnas.strategies.spdarts import sparse_probability


def test_zero_one_loss_by_hand():
    # σ(0) = 0.5, σ(ln 3) = 0.75, σ(−ln 3) = 0.25: squared distances to 0.5 are 0, 1/16, 1/16
    alphas = [torch.tensor([0.0, math.log(3.0)]), torch.tensor([[-math.log(3.0)]])]
    assert float(zero_one_loss(alphas)) == pytest.approx(-(0 + 1 / 16 + 1 / 16) / 3)
    assert float(fair_loss(torch.tensor(2.0), alphas, w01=10.0)) == pytest.approx(2.0 - 10 * (1 / 8) / 3)


def test_zero_one_loss_pushes_sigmoids_away_from_one_half():
    alpha = torch.tensor([0.3, -0.2], requires_grad=True)
    (grad,) = torch.autograd.grad(zero_one_loss([alpha]), [alpha])
    assert grad[0] < 0 < grad[1]  # gradient descent raises the positive α and lowers the negative one


def test_marginal_contributions_and_ablation_loss_by_hand():
    full = torch.tensor(1.0, dtype=torch.float64)
    ablated = [torch.tensor(v, dtype=torch.float64) for v in (1.5, 1.2, 1.3)]
    contributions = marginal_contributions(full, ablated)
    assert contributions.tolist() == pytest.approx([-0.5, -0.2, -0.3])
    # mean(M) = −1/3; L_AB^i = (M^i − mean) / mean
    assert ablation_loss(contributions).tolist() == pytest.approx([0.5, -0.4, -0.1])
    assert ablation_loss(torch.tensor([0.2, -0.2])).tolist() == [0.0, 0.0]  # mean 0: the loss is 0
    alpha = torch.tensor([0.0, math.log(3.0)])
    total = ddarts_total_loss(torch.tensor(1.0), alpha, torch.tensor(0.5), w01=8.0, w_ab=0.5)
    assert float(total) == pytest.approx(1.0 + 8.0 * -(1 / 16) / 2 + 0.5 * 0.5)


def test_sparse_probability_schedule_eq_20():
    # p_up = 1, p_low = 0.2, warm-up 2 epochs, last epoch index 10
    values = [sparse_probability(1.0, 0.2, 10, i, 2) for i in range(11)]
    assert values[:2] == [0.0, 0.0]
    assert values[2] == pytest.approx(0.2)
    assert values[6] == pytest.approx(0.2 + 0.8 / 8 * 4)
    assert values[10] == pytest.approx(1.0)


def test_entropy_of_uniform_and_one_hot_weights():
    uniform = torch.full((3, 8), 1 / 8)
    assert float(weight_entropy(uniform)) == pytest.approx(math.log(8))
    assert float(weight_entropy(torch.eye(4))) == pytest.approx(0.0, abs=1e-9)
    assert float(weight_entropy(torch.sigmoid(torch.zeros(2, 4)))) == pytest.approx(math.log(4))
