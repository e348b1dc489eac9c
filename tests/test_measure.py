"""The measurement method: statistics, the median's confidence interval and the adaptive stopping rule."""

import itertools

import numpy as np
import pytest

from hwnas.profilers.base import MeasureSettings, Timing, measure_calls, median_relative_ci
from hwnas.profilers.target.runners import measure_paired


def test_timing_statistics_match_numpy():
    samples = [3.0, 1.0, 2.0, 5.0, 4.0]
    timing = Timing.from_samples(samples)
    assert timing.median == 3.0 and timing.n == 5
    assert timing.p10 == pytest.approx(np.percentile(samples, 10))
    assert timing.std == pytest.approx(np.std(samples, ddof=1))
    assert timing.per_image(2).median == 1.5


def test_median_ci_shrinks_with_more_samples_and_is_zero_for_constant_data():
    rng = np.random.default_rng(0)
    small = median_relative_ci(np.sort(rng.normal(10, 1, 30)))
    large = median_relative_ci(np.sort(rng.normal(10, 1, 3000)))
    assert large < small
    assert median_relative_ci(np.full(50, 2.0)) == 0.0


def _fake_clock(step_s: float):
    """A clock that advances by `step_s` at every reading: each call takes step_s/2 between readings."""
    ticks = itertools.count()
    return lambda: next(ticks) * step_s


def test_constant_latency_stops_at_min_repeats_rounded_to_a_check():
    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=20, max_repeats=1000, target_ci=0.02, budget_s=1e9)
    timing = measure_calls(lambda: None, settings, clock=_fake_clock(0.001))
    assert timing.n == 20 and timing.median == pytest.approx(1.0)


def test_noisy_latency_stops_at_the_repeat_cap():
    rng = np.random.default_rng(1)
    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=5, max_repeats=60, target_ci=1e-9, budget_s=1e9)
    noisy = iter(np.cumsum(rng.uniform(0.5, 1.5, 10_000)))
    timing = measure_calls(lambda: None, settings, clock=lambda: float(next(noisy)))
    assert timing.n == 60


def test_time_budget_caps_timing():
    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=5, max_repeats=10**6, target_ci=1e-9, budget_s=0.05)
    timing = measure_calls(lambda: None, settings, clock=_fake_clock(0.001))
    assert timing.n < 100


def test_paired_timing_counts_only_calls_between_two_fast_reference_calls():
    """A machine that is slowed 2x on every third reference call: the target's calls beside a slow one never count,
    and the counted ones are exactly those whose both neighbours ran within the limit."""
    reference_ms = itertools.cycle([1.0, 1.0, 2.0])
    target_ms = itertools.count(1)
    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=6, max_repeats=6, target_ci=0.0,
                               budget_s=1e9).to_dict()
    paired = measure_paired(lambda: float(next(target_ms)), lambda: next(reference_ms), 1.1, settings)
    assert len(paired.counted) == 6 and len(paired.reference) == len(paired.every) + 1
    counted = [s for s, before, after in zip(paired.every, paired.reference, paired.reference[1:])
               if before <= 1.1 and after <= 1.1]
    assert paired.counted == counted and len(paired.every) > len(paired.counted)


def test_paired_timing_scales_each_call_by_its_reference_neighbours():
    """A target that slows with the machine (3x the reference call before it) reads 3 reference units whenever the
    machine held one speed around it, fast or 2x slow."""
    reference_ms = itertools.cycle([1.0, 1.0, 2.0, 2.0])
    last = [1.0]

    def reference() -> float:
        last[0] = next(reference_ms)
        return last[0]

    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=4, max_repeats=4, target_ci=0.0,
                               budget_s=1e9).to_dict()
    paired = measure_paired(lambda: 3 * last[0], reference, 1.1, settings)
    neighbours = list(zip(paired.reference, paired.reference[1:]))
    assert paired.every_relative == pytest.approx([2 * s / (b + a) for s, (b, a) in zip(paired.every, neighbours)])
    held = [r for r, (b, a) in zip(paired.every_relative, neighbours) if b == a]
    assert set(paired.every) == {3.0, 6.0} and held == pytest.approx([3.0] * len(held)) and len(held) > 4
    assert paired.relative == pytest.approx([3.0] * 4) and len(paired.counted) == 4


def test_paired_timing_gives_up_at_the_budget_with_nothing_counted():
    settings = MeasureSettings(warmup=0, warmup_s=0, min_repeats=5, budget_s=0.5).to_dict()
    paired = measure_paired(lambda: 1.0, lambda: 9.0, 1.1, settings, extra_s=0.5, clock=_fake_clock(0.01))
    assert paired.counted == [] and 0 < len(paired.every) < 200
