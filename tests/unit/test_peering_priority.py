"""Peering priorities of operator replicas: ``--priority=oldest`` ranks them by start time, so a
replica that starts never outranks one that already runs (decision 102)."""

from __future__ import annotations

import argparse

import pytest

from streamspace_operator.cli import _priority
from streamspace_operator.runtime import seniority_priority

pytestmark = pytest.mark.unit

NOW = 1_796_000_000.0  # late 2026, Unix seconds


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ((NOW, 1023), (NOW + 0.001, 0)),  # one millisecond beats any tie-breaker
        ((NOW, 0), (NOW + 3600, 1023)),
        ((NOW - 86400 * 365 * 50, 0), (NOW, 0)),
    ],
)
def test_an_earlier_start_ranks_higher(
    earlier: tuple[float, int], later: tuple[float, int]
) -> None:
    assert seniority_priority(*earlier) > seniority_priority(*later)


def test_the_same_millisecond_is_told_apart_by_the_tiebreaker() -> None:
    assert seniority_priority(NOW, 7) != seniority_priority(NOW, 8)


@pytest.mark.parametrize("started", [0.0, NOW, 4_000_000_000.0])  # 1970, 2026, 2096
def test_priorities_stay_positive_and_exact_in_json(started: float) -> None:
    assert 0 < seniority_priority(started, 1023) < 2**53


@pytest.mark.parametrize("tiebreak", [-1, 1024])
def test_a_tiebreaker_outside_its_range_is_refused(tiebreak: int) -> None:
    with pytest.raises(ValueError, match="tiebreak"):
        seniority_priority(NOW, tiebreak)


def test_the_command_line_accepts_oldest_random_and_numbers() -> None:
    assert _priority("5") == 5
    assert 0 < _priority("random") < 2**31
    assert 0 < _priority("oldest") < 2**53
    with pytest.raises(argparse.ArgumentTypeError, match="'oldest'"):
        _priority("newest")
