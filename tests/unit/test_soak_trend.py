"""The soak benchmark's trend: least-squares slope per hour after a warm-up (``streamspace_dev.trend``)."""

from __future__ import annotations

import math

import pytest

from streamspace_dev.trend import slope, trend

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("times", "values", "expected"),
    [
        ([0, 1, 2, 3], [5, 5, 5, 5], 0.0),  # flat
        ([0, 1, 2, 3], [1, 3, 5, 7], 2.0),  # a line
        ([0, 2, 3, 7], [10, 6, 4, -4], -2.0),  # uneven spacing, falling
        ([0, 1, 2, 3], [0, 2, 0, 2], 0.4),  # noise: the least-squares fit, not the endpoints
        ([0, 1, 2], [1, math.nan, 3], 1.0),  # a missing sample is left out
    ],
)
def test_slope(times: list[float], values: list[float], expected: float) -> None:
    assert slope(times, values) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("times", "values"),
    [([], []), ([1], [4]), ([2, 2, 2], [1, 2, 3]), ([0, 1], [math.nan, 1])],
)
def test_slope_undefined(times: list[float], values: list[float]) -> None:
    assert math.isnan(slope(times, values))


def test_trend_is_per_hour_and_skips_the_warm_up() -> None:
    # a start-up jump of 100 in the first minute, then 1 unit per minute: 60 per hour
    seconds = [float(s) for s in range(0, 600, 10)]
    values = [0.0 if s < 60 else 100.0 + s / 60 for s in seconds]
    warm = trend(seconds, values, warmup=60)
    assert warm.samples == 54
    assert warm.per_hour == pytest.approx(60.0)
    assert warm.mean == pytest.approx(100 + sum(seconds[6:]) / 54 / 60)
    assert warm.percent_per_hour == pytest.approx(100 * 60 / warm.mean)
    assert trend(seconds, values, warmup=0).per_hour > 60  # the jump would read as a leak


def test_trend_of_nothing_after_the_warm_up() -> None:
    empty = trend([0.0, 10.0], [1.0, 2.0], warmup=20)
    assert empty.samples == 0
    assert math.isnan(empty.mean)
    assert math.isnan(empty.per_hour)
    assert math.isnan(trend([0.0], [0.0], warmup=0).percent_per_hour)
