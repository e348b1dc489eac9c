"""The from-scratch schedule: a linear warm-up to the peak rate, then cosine annealing to zero."""

import pytest

from hwnas.training import warmup_cosine_lr


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
