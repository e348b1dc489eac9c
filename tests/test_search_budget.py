"""Latency budgets: units are explicit, shares of the range resolve, out-of-range budgets are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwnas.errors import ConfigError
from hwnas.units import format_ms, parse_duration_ms, resolve_budget_ms


@pytest.mark.parametrize("text,ms", [("20ms", 20.0), ("0.02s", 20.0), ("20000us", 20.0), ("20000µs", 20.0),
                                     (" 1.5 ms ", 1.5), ("2e-3s", 2.0), ("750us", 0.75)])
def test_durations(text, ms):
    assert parse_duration_ms(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["20", "ms", "-3ms", "0ms", "20 minutes", "twenty ms", ""])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="e.g. 20ms|positive"):
        parse_duration_ms(text)


@given(st.floats(min_value=1e-3, max_value=1e4, allow_nan=False))
def test_units_agree(ms):
    assert parse_duration_ms(f"{ms}ms") == pytest.approx(parse_duration_ms(f"{ms / 1000}s"))
    assert parse_duration_ms(f"{ms}ms") == pytest.approx(parse_duration_ms(f"{ms * 1000}us"))


def test_budget_within_range():
    assert resolve_budget_ms("3ms", (2.0, 8.0)) == 3.0
    assert resolve_budget_ms("50%", (2.0, 8.0)) == pytest.approx(5.0)
    assert resolve_budget_ms("0%", (2.0, 8.0)) == pytest.approx(2.0)
    assert resolve_budget_ms("100 %", (2.0, 8.0)) == pytest.approx(8.0)


@pytest.mark.parametrize("text", ["1ms", "9ms", "0.0005s"])
def test_budget_outside_range_names_the_range(text):
    with pytest.raises(ConfigError) as error:
        resolve_budget_ms(text, (2.0, 8.0))
    assert "2ms..8ms" in str(error.value) and "\n" not in str(error.value)


def test_relative_budget_bounds():
    with pytest.raises(ConfigError, match="0%..100%"):
        resolve_budget_ms("101%", (2.0, 8.0))


def test_format_ms():
    assert format_ms(0.4123) == "0.412ms" and format_ms(1250.0) == "1.25s"
