"""Scheduled sessions: ``schedules.decide`` driven by a frozen clock, across DST changes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streamspace.schedules import (
    INVALID,
    SCHEDULED,
    decide,
    due_within,
    is_fire_time,
    next_fire,
    schedule_problems,
)

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
MIN = timedelta(minutes=1)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def drive(
    schedule: Mapping[str, Any], start: datetime, end: datetime, step: timedelta = 30 * MIN / 60
) -> list[tuple[str, datetime, datetime]]:
    """Tick the decision every ``step`` from ``start`` to ``end`` as the operator's timer does,
    keeping the status (and the fired annotation) it writes; the transitions made, as
    (kind, fire time, tick)."""
    status: dict[str, Any] = {}
    fired: str | None = None
    made = []
    now = start
    while now <= end:
        decision = decide({"schedule": schedule}, status, now, fired)
        if decision.transition is not None:
            assert decision.fired_at is not None
            made.append((decision.transition, decision.fired_at, now))
            fired = f"{decision.transition}:{decision.fired_at:%Y-%m-%dT%H:%M:%SZ}"
        status = decision.status
        now += step
    return made


def test_spring_forward_a_skipped_start_fires_once_at_the_first_minute_after_the_skip() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day
    made = drive(
        {"start": "30 2 * * *", "timeZone": "Europe/Berlin"},
        at("2026-03-28T20:00:00Z"),
        at("2026-03-29T20:00:00Z"),
    )
    assert [(kind, fire) for kind, fire, _ in made] == [("start", at("2026-03-29T01:00:00Z"))]
    assert made[0][1].astimezone(BERLIN).strftime("%H:%M %Z") == "03:00 CEST"
    assert made[0][2] - made[0][1] < MIN  # fired at the first tick on or after its time
    # the next day it is 02:30 CEST again
    assert next_fire("30 2 * * *", BERLIN, made[0][1]) == at("2026-03-30T00:30:00Z")


def test_fall_back_a_repeated_start_fires_once() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET; 01:30 happens once, but 02:30 twice
    made = drive(
        {"start": "30 2 * * *", "timeZone": "Europe/Berlin"},
        at("2026-10-24T20:00:00Z"),
        at("2026-10-25T20:00:00Z"),
    )
    assert [(kind, fire) for kind, fire, _ in made] == [("start", at("2026-10-25T00:30:00Z"))]
    made = drive(
        {"start": "30 1 * * *", "timeZone": "Europe/Berlin"},
        at("2026-10-24T20:00:00Z"),
        at("2026-10-25T20:00:00Z"),
    )
    assert [fire for _, fire, _ in made] == [at("2026-10-24T23:30:00Z")]


def test_fall_back_in_new_york_a_01_30_that_happens_twice_fires_once() -> None:
    # 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 is 05:30Z and again 06:30Z
    made = drive(
        {"start": "30 1 * * *", "stop": "45 1 * * *", "timeZone": "America/New_York"},
        at("2026-10-31T20:00:00Z"),
        at("2026-11-02T20:00:00Z"),
    )
    assert [(kind, fire) for kind, fire, _ in made] == [
        ("start", at("2026-11-01T05:30:00Z")),  # its first pass, EDT
        ("stop", at("2026-11-01T05:45:00Z")),
        ("start", at("2026-11-02T06:30:00Z")),  # the next day, EST
        ("stop", at("2026-11-02T06:45:00Z")),
    ]


def test_a_wildcard_hour_fires_in_every_real_hour_of_the_fall_back_day() -> None:
    made = drive(
        {"start": "30 * * * *", "timeZone": "Europe/Berlin"},
        at("2026-10-24T22:00:00Z"),  # 00:00 CEST, the day's start
        at("2026-10-25T22:59:00Z"),  # 23:59 CET, its end
        step=MIN,
    )
    assert len(made) == 25  # a 25-hour day


def test_start_and_stop_alternate_and_the_next_times_are_recorded() -> None:
    schedule = {"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "timeZone": "Europe/Berlin"}
    made = drive(schedule, at("2026-11-27T12:00:00Z"), at("2026-12-01T12:00:00Z"), step=MIN)
    # Friday 18:00 CET stop, Monday 08:00 start and 18:00 stop, Tuesday 08:00 start
    assert [(kind, fire) for kind, fire, _ in made] == [
        ("stop", at("2026-11-27T17:00:00Z")),
        ("start", at("2026-11-30T07:00:00Z")),
        ("stop", at("2026-11-30T17:00:00Z")),
        ("start", at("2026-12-01T07:00:00Z")),
    ]
    first = decide({"schedule": schedule}, {}, at("2026-11-27T12:00:00Z"))
    assert first.transition is None
    assert first.status == {"nextStart": "2026-11-30T07:00:00Z", "nextStop": "2026-11-27T17:00:00Z"}
    assert first.condition is not None and first.condition.status is True
    assert first.condition.reason == SCHEDULED


def test_nothing_fires_between_fire_times_whatever_the_state() -> None:
    """A user's decision after a scheduled start stands until the next scheduled time: the
    decision reads no state, only the clock and the recorded fire times."""
    schedule = {"start": "0 8 * * *", "stop": "0 18 * * *"}
    status = {"nextStart": "2026-11-28T08:00:00Z", "nextStop": "2026-11-28T18:00:00Z"}
    for minute in range(0, 9 * 60, 7):
        now = at("2026-11-28T08:00:30Z") + minute * MIN
        fired = "start:2026-11-28T08:00:00Z"
        decision = decide({"schedule": schedule, "state": "hibernated"}, status, now, fired)
        assert decision.transition is None


def test_a_fire_recorded_by_its_transition_is_not_made_again() -> None:
    schedule = {"start": "0 8 * * *"}
    status = {"nextStart": "2026-11-28T08:00:00Z"}
    now = at("2026-11-28T08:00:10Z")
    assert decide({"schedule": schedule}, status, now).transition == "start"
    again = decide({"schedule": schedule}, status, now, "start:2026-11-28T08:00:00Z")
    assert again.transition is None and again.status == {
        "nextStart": "2026-11-29T08:00:00Z",
        "nextStop": None,
    }


def test_after_missed_fire_times_only_the_latest_transition_is_made() -> None:
    schedule = {"start": "0 8 * * *", "stop": "0 18 * * *"}
    # down from before Friday's stop until after Monday's start: it starts
    status = {"nextStart": "2026-11-28T08:00:00Z", "nextStop": "2026-11-27T18:00:00Z"}
    decision = decide({"schedule": schedule}, status, at("2026-11-30T09:00:00Z"))
    assert (decision.transition, decision.fired_at) == ("start", at("2026-11-30T08:00:00Z"))
    assert decision.status == {
        "nextStart": "2026-12-01T08:00:00Z",
        "nextStop": "2026-11-30T18:00:00Z",
    }


def test_a_changed_schedule_is_computed_again_from_now_without_firing() -> None:
    status = {"nextStart": "2026-11-28T08:00:00Z"}  # recorded for "0 8 * * *"
    decision = decide({"schedule": {"start": "15 9 * * *"}}, status, at("2026-11-28T08:30:00Z"))
    assert decision.transition is None
    assert decision.status["nextStart"] == "2026-11-28T09:15:00Z"


def test_a_start_and_a_stop_at_the_same_minute_stop() -> None:
    schedule = {"start": "0 8 * * *", "stop": "0 8 * * *"}
    status = {"nextStart": "2026-11-28T08:00:00Z", "nextStop": "2026-11-28T08:00:00Z"}
    assert decide({"schedule": schedule}, status, at("2026-11-28T08:00:01Z")).transition == "stop"


def test_no_schedule_clears_the_times_and_the_condition() -> None:
    decision = decide({}, {"nextStart": "2026-11-28T08:00:00Z"}, at("2026-11-28T09:00:00Z"))
    assert decision.transition is None and decision.condition is None
    assert decision.status == {"nextStart": None, "nextStop": None}


def test_an_invalid_schedule_is_a_false_condition_with_field_paths() -> None:
    spec = {"schedule": {"start": "61 * * * *", "timeZone": "Mars/Olympus_Mons"}}
    decision = decide(spec, {}, at("2026-11-28T09:00:00Z"))
    assert decision.transition is None
    assert decision.status == {"nextStart": None, "nextStop": None}
    assert decision.condition is not None and decision.condition.status is False
    assert decision.condition.reason == INVALID
    assert "spec.schedule.start: invalid cron expression '61 * * * *'" in decision.condition.message
    assert "spec.schedule.timeZone: unknown time zone 'Mars/Olympus_Mons'" in (
        decision.condition.message
    )


@pytest.mark.parametrize(
    ("schedule", "problems"),
    [
        ({"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "timeZone": "Europe/Berlin"}, {}),
        ({"stop": "*/15 * * * *"}, {}),
        ({}, {"schedule": "needs start, stop or both"}),
        ({"start": "0 8 * *"}, {"schedule.start": "five fields"}),
        ({"start": "0 0 8 * * *"}, {"schedule.start": "five fields"}),
        ({"start": "0 25 * * *"}, {"schedule.start": "Bad hour"}),
        ({"stop": "0 8 * * FOO"}, {"schedule.stop": "Bad day-of-week"}),
        ({"start": 8}, {"schedule.start": "five fields"}),
        ({"start": "0 8 * * *", "timeZone": "Nowhere/City"}, {"schedule.timeZone": "unknown"}),
        ({"start": "0 8 * * *", "timeZone": "../../etc/passwd"}, {"schedule.timeZone": "unknown"}),
        ({"start": "0 8 * * *", "when": "now"}, {"schedule": "unknown field(s) when"}),
        ("0 8 * * *", {"schedule": "must be an object"}),
    ],
)
def test_schedule_problems(schedule: Any, problems: dict[str, str]) -> None:
    found = schedule_problems(schedule)
    assert set(found) == set(problems), found
    for path, text in problems.items():
        assert text in found[path]


def test_due_within_names_the_next_fire_time_inside_the_window() -> None:
    status = {"nextStart": "2026-11-28T08:00:20Z", "nextStop": "2026-11-28T08:00:10Z"}
    now = at("2026-11-28T08:00:00Z")
    assert due_within(status, now, timedelta(seconds=30)) == at("2026-11-28T08:00:10Z")
    assert due_within(status, now, timedelta(seconds=5)) is None
    assert due_within({}, now, timedelta(seconds=30)) is None


def test_fire_times_are_those_of_the_forward_walk() -> None:
    assert is_fire_time("30 2 * * *", BERLIN, at("2026-03-29T01:00:00Z"))
    assert not is_fire_time("30 2 * * *", BERLIN, at("2026-03-29T00:30:00Z"))
    assert is_fire_time("30 1 * * *", BERLIN, at("2026-10-24T23:30:00Z"))
    assert not is_fire_time("30 1 * * *", BERLIN, at("2026-10-25T00:30:00Z"))
