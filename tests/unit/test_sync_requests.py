"""The per-repository rate limit on webhook sync requests: pure decisions, an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from streamspace.sync_requests import next_request, parse, stamp, wait_before_sync

pytestmark = pytest.mark.unit

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
INTERVAL = timedelta(seconds=10)


def at(seconds: float) -> str:
    return stamp(NOW + timedelta(seconds=seconds))


# previous annotation → when the new request's sync runs (None: covered by one scheduled later)
NEXT_REQUEST = [
    (None, NOW),  # never requested: at once
    ("before-1", NOW),  # not a time: at once
    (at(-60), NOW),  # long ago: at once
    (at(-10), NOW),  # exactly one interval ago: at once
    (at(-3), NOW + timedelta(seconds=7)),  # recent: one interval after it
    (at(0), NOW + INTERVAL),  # this very moment: one interval later
    (at(4), None),  # a sync is already scheduled for later: it will see this push
    ("2026-05-01T11:59:58Z", NOW + timedelta(seconds=8)),  # seconds only (older writers)
]


@pytest.mark.parametrize(("previous", "expected"), NEXT_REQUEST)
def test_next_request(previous: str | None, expected: datetime | None) -> None:
    assert next_request(previous, NOW, INTERVAL) == expected


def test_a_burst_yields_at_most_one_sync_per_interval_and_the_last_push_is_synced() -> None:
    """Deliveries every 100 ms for a minute: writes (= syncs) at most once per interval, and
    the last one runs after the last delivery."""
    annotation: str | None = None
    writes: list[datetime] = []
    for tick in range(600):
        now = NOW + timedelta(milliseconds=100 * tick)
        when = next_request(annotation, now, INTERVAL)
        if when is not None:
            annotation = stamp(when)
            writes.append(when)
    assert all(b - a >= INTERVAL for a, b in pairwise(writes))
    assert len(writes) <= 60 // 10 + 1
    assert writes[-1] >= NOW + timedelta(milliseconds=100 * 599)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("garbage", None),
        (at(-1), None),
        (at(0), None),
        (at(4), timedelta(seconds=4)),
        (at(3600), INTERVAL),  # a skewed or hostile clock never holds a sync back longer
    ],
)
def test_wait_before_sync(value: str | None, expected: timedelta | None) -> None:
    assert wait_before_sync(value, NOW, INTERVAL) == expected


def test_stamps_round_trip_to_the_microsecond() -> None:
    moment = NOW + timedelta(microseconds=123456)
    assert stamp(moment) == "2026-05-01T12:00:00.123456Z"
    assert parse(stamp(moment)) == moment
