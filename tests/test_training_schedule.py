"""The from-scratch schedule: a linear warm-up to the peak rate, then cosine annealing to zero; and the start:
residual blocks as the identity."""

import pytest

from hwnas.arch import Arch
from hwnas.config import TrainConfig
from hwnas.data import load_splits
from hwnas.training import train_network, warmup_cosine_lr


def test_the_rate_rises_over_the_warmup_then_anneals_to_zero():
    steps = [i / 100 for i in range(1, 1001)]  # 10 epochs in hundredths
    rates = [warmup_cosine_lr(0.05, done, epochs=10, warmup_epochs=1) for done in steps]
    peak = rates.index(max(rates))
    assert steps[peak] == pytest.approx(1.0)
    assert rates[0] == pytest.approx(0.05 / 100)
    assert all(a < b for a, b in zip(rates[:peak], rates[1:peak + 1]))
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1:]))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_a_short_training_warms_up_over_a_fifth_of_it_at_most():
    assert warmup_cosine_lr(0.1, 0.2, epochs=1, warmup_epochs=1) == pytest.approx(0.1)
    assert warmup_cosine_lr(0.1, 0.1, epochs=1, warmup_epochs=1) == pytest.approx(0.05)


def test_no_warmup_is_the_plain_cosine():
    assert warmup_cosine_lr(0.1, 0.0, epochs=4, warmup_epochs=0) == pytest.approx(0.1)
    assert warmup_cosine_lr(0.1, 2.0, epochs=4, warmup_epochs=0) == pytest.approx(0.05)


def _projection_scales(arch: str, zero_init_residual: bool) -> list[float]:
    model = Arch.parse(arch).build()
    train = load_splits("digits", 32, ("train",), limit=16)["train"]
    train_network(model, train, epochs=0, batch_size=8, lr=0.1, momentum=0.9, weight_decay=0.0, seed=0,
                  zero_init_residual=zero_init_residual)
    return [float(block.project[1].weight.detach().abs().max()) for block in model if hasattr(block, "project")]


def test_training_starts_each_residual_block_as_the_identity_by_default():
    arch = "32:relu:cn_k3_s2_c16,ir_k3_e3_c16,ir_k3_s2_e3_c24,ir_k5_e6_c24,cn_k1_c64,fc_c10"
    assert TrainConfig().zero_init_residual
    residual, strided, residual_again = _projection_scales(arch, TrainConfig().zero_init_residual)
    assert residual == 0.0 and residual_again == 0.0 and strided == 1.0  # a block without a residual keeps its scale
    assert _projection_scales(arch, zero_init_residual=False) == [1.0, 1.0, 1.0]
