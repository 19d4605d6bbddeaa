"""Idleness decisions: table-driven cases of ``idle.evaluate``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from streamspace.idle import ConnectionView, IdleInput, evaluate

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def inp(**kw: object) -> IdleInput:
    base: dict[str, object] = {
        "state": "running",
        "phase": "Running",
        "idle_timeout": 30 * MIN,
        "last_activity": None,
        "started_at": NOW - 10 * MIN,
        "connections": (),
        "now": NOW,
        "stale_after": MIN,
        "hibernate_warning": 5 * MIN,
    }
    base.update(kw)
    return IdleInput(**base)  # type: ignore[arg-type]


def conn(name: str, ago: timedelta | None, state: str = "active") -> ConnectionView:
    return ConnectionView(name, state, None if ago is None else NOW - ago)


@pytest.mark.parametrize(
    ("case", "given", "active", "deadline", "warn", "hibernate", "stale"),
    [
        ("fresh start: deadline from start", inp(), 0, NOW + 20 * MIN, False, False, ()),
        ("live connection: no deadline", inp(connections=(conn("a", MIN / 2),)), 1, None, False, False, ()),
        ("just adopted, no heartbeat yet: live", inp(connections=(conn("a", None),)), 1, None, False, False, ()),
        ("stale connection does not count", inp(connections=(conn("a", 2 * MIN),)), 0, NOW + 28 * MIN, False, False, ("a",)),
        ("rejected connection ignored", inp(connections=(conn("a", MIN / 2, "rejected"),)), 0, NOW + 20 * MIN, False, False, ()),
        ("in the warning window", inp(started_at=NOW - 26 * MIN), 0, NOW + 4 * MIN, True, False, ()),
        ("exactly at the deadline", inp(started_at=NOW - 30 * MIN), 0, NOW, False, True, ()),
        ("past the deadline", inp(started_at=NOW - 40 * MIN), 0, NOW - 10 * MIN, False, True, ()),
        ("recorded activity wins over start", inp(started_at=NOW - 40 * MIN, last_activity=NOW - MIN), 0, NOW + 29 * MIN, False, False, ()),
        ("hibernated: no deadline", inp(state="hibernated"), 0, None, False, False, ()),
        ("still starting: no deadline", inp(phase="Pending"), 0, None, False, False, ()),
    ],
)  # fmt: skip
def test_evaluate(
    case: str,
    given: IdleInput,
    active: int,
    deadline: datetime | None,
    warn: bool,
    hibernate: bool,
    stale: tuple[str, ...],
) -> None:
    decision = evaluate(given)
    assert decision.active == active, case
    assert decision.idle_deadline == deadline, case
    assert decision.warn == warn, case
    assert decision.hibernate == hibernate, case
    assert decision.stale == stale, case


def test_heartbeat_activity_writes_are_throttled_but_decisions_are_not() -> None:
    recorded = NOW - 20 * timedelta(seconds=1)
    recent = inp(last_activity=recorded, connections=(conn("a", timedelta(seconds=1)),))
    decision = evaluate(recent)
    assert decision.last_activity == NOW - timedelta(seconds=1)
    assert not decision.write_last_activity  # 19 s newer than recorded: under 30 s
    later = inp(
        last_activity=NOW - 45 * timedelta(seconds=1),
        connections=(conn("a", timedelta(seconds=1)),),
    )
    assert evaluate(later).write_last_activity


def test_never_before_the_deadline() -> None:
    """Walk the clock across the deadline: hibernate flips exactly at it, never earlier."""
    start = NOW - 30 * MIN
    for offset in range(-120, 121, 7):
        moment = NOW + timedelta(seconds=offset)
        decision = evaluate(inp(started_at=start, now=moment))
        assert decision.hibernate == (moment >= NOW)
