"""Scheduled sessions (``spec.schedule``): the next start and stop, and which one is due.

A schedule is one or two five-field cron expressions, ``start`` and ``stop``, read in the
IANA ``timeZone`` (default UTC), evaluated by ``cronsim``. Across DST changes it behaves as
Debian cron does: a fixed time that does not exist on a spring-forward day fires at the first
minute that does (02:30 Europe/Berlin fires at 03:00 CEST), and a fixed time that happens twice
on a fall-back day fires once, at its first occurrence.

``status.nextStart`` and ``status.nextStop`` are the pending fire times (decision 180): a
recorded time that is still a fire time of the current cron is due once the clock passes it;
one that is not (the schedule changed, or nothing was recorded) is computed again from now,
firing nothing. When the operator missed several fire times (it was down), only the latest
transition is made. All pure, with the clock passed in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from streamspace.conditions import Condition, parse_timestamp, timestamp

SCHEDULED = "Scheduled"  # the condition type
INVALID = "ScheduleInvalid"  # its reason (and the Event's) for a schedule that cannot run
START, STOP = "start", "stop"
FIELDS = (START, STOP)
# Set together with the state change a scheduled transition makes: "<start|stop>:<fire time>",
# so that a fire is made once even when the status write after it is lost.
FIRED_ANNOTATION = "stream.space/schedule-fired"

MAX_CATCH_UP = 20_000  # fire times walked over after a long absence (two weeks of minutes)
# Five fields, as crontab has them (cronsim also takes a sixth, seconds: not offered).
_FIVE_FIELDS = re.compile(r"^\S+(\s+\S+){4}$")


@dataclass(frozen=True)
class Schedule:
    start: str | None
    stop: str | None
    time_zone: str = "UTC"

    @classmethod
    def of(cls, spec: Mapping[str, Any]) -> Schedule | None:
        """The session spec's schedule, None when it has none."""
        raw = spec.get("schedule")
        if not isinstance(raw, Mapping):
            return None
        start, stop = raw.get("start"), raw.get("stop")
        return cls(
            start=str(start) if start else None,
            stop=str(stop) if stop else None,
            time_zone=str(raw.get("timeZone") or "UTC"),
        )

    def cron(self, kind: str) -> str | None:
        return self.start if kind == START else self.stop


def schedule_problems(raw: Any) -> dict[str, str]:
    """What is wrong with a ``schedule`` object, by field path below it (empty: nothing)."""
    if not isinstance(raw, Mapping):
        return {"schedule": "must be an object with start, stop and timeZone"}
    problems: dict[str, str] = {}
    unknown = sorted(set(raw) - {START, STOP, "timeZone"})
    if unknown:
        problems["schedule"] = f"unknown field(s) {', '.join(unknown)}"
    for kind in FIELDS:
        value = raw.get(kind)
        if value is None:
            continue
        problem = cron_problem(value)
        if problem:
            problems[f"schedule.{kind}"] = problem
    if raw.get(START) is None and raw.get(STOP) is None:
        problems["schedule"] = "needs start, stop or both"
    zone = raw.get("timeZone", "UTC")
    if zone_of(zone) is None:
        problems["schedule.timeZone"] = (
            f"unknown time zone {zone!r}: an IANA name like Europe/Berlin"
        )
    return problems


def cron_problem(value: Any) -> str | None:
    """Why ``value`` is no five-field cron expression, None when it is one."""
    if not isinstance(value, str) or len(value) > 128 or not _FIVE_FIELDS.match(value):
        return "must be a cron expression of five fields: minute hour day-of-month month weekday"
    try:
        CronSim(value, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return f"invalid cron expression {value!r}: {exc}"
    return None


def zone_of(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def next_fire(cron: str, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``, in UTC (None: none within 50 years)."""
    local = after.astimezone(zone).replace(microsecond=0)
    try:
        for moment in CronSim(cron, local):
            # a walk started inside a repeated hour may name its first pass: not after ``after``
            if moment.astimezone(UTC) > after:
                return moment.astimezone(UTC)
    except StopIteration:
        pass
    return None


def last_fire(cron: str, zone: ZoneInfo, since: datetime, at: datetime) -> datetime:
    """The last fire time at or before ``at``, walking forward from the fire time ``since``
    (cronsim's reverse walk names the wrong pass of a repeated hour). The walk is bounded:
    after ``MAX_CATCH_UP`` fire times it stops at the latest it reached."""
    latest = since
    for _ in range(MAX_CATCH_UP):
        following = next_fire(cron, zone, latest)
        if following is None or following > at:
            break
        latest = following
    return latest


def is_fire_time(cron: str, zone: ZoneInfo, moment: datetime) -> bool:
    return next_fire(cron, zone, moment - timedelta(seconds=1)) == moment


@dataclass(frozen=True)
class ScheduleDecision:
    transition: str | None  # START or STOP: due now
    fired_at: datetime | None  # the fire time of that transition
    status: dict[str, Any]  # nextStart, nextStop (None: absent)
    condition: Condition | None  # None: no schedule, the condition goes


def decide(
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    now: datetime,
    fired: str | None = None,
) -> ScheduleDecision:
    """The schedule's due transition and the pending fire times to record.

    ``fired`` is the ``FIRED_ANNOTATION`` value: a transition made at that fire time already.
    """
    schedule = Schedule.of(spec)
    if schedule is None:
        return ScheduleDecision(None, None, {"nextStart": None, "nextStop": None}, None)
    problems = schedule_problems(spec.get("schedule"))
    zone = zone_of(schedule.time_zone)
    if problems or zone is None:
        message = "; ".join(f"spec.{path}: {why}" for path, why in sorted(problems.items()))
        condition = Condition(SCHEDULED, False, INVALID, message)
        return ScheduleDecision(None, None, {"nextStart": None, "nextStop": None}, condition)
    pending: dict[str, datetime | None] = {}
    due: list[tuple[datetime, str]] = []
    for kind in FIELDS:
        cron = schedule.cron(kind)
        key = "nextStart" if kind == START else "nextStop"
        if cron is None:
            pending[key] = None
            continue
        recorded = parse_timestamp(status.get(key))
        if recorded is not None and is_fire_time(cron, zone, recorded):
            if recorded <= now:
                latest = last_fire(cron, zone, recorded, now)
                if fired != f"{kind}:{timestamp(latest)}":
                    due.append((latest, kind))
                pending[key] = next_fire(cron, zone, now)
            else:
                pending[key] = recorded
        else:
            pending[key] = next_fire(cron, zone, now)
    # the latest due fire wins; a start and a stop due at the same minute: the stop
    transition = max(due, key=lambda d: (d[0], d[1] == STOP)) if due else None
    times = {k: (timestamp(v) if v is not None else None) for k, v in pending.items()}
    upcoming = ", ".join(f"{k} {v}" for k, v in times.items() if v) or "no further fire time"
    condition = Condition(SCHEDULED, True, SCHEDULED, f"{upcoming} ({schedule.time_zone})")
    if transition is None:
        return ScheduleDecision(None, None, times, condition)
    return ScheduleDecision(transition[1], transition[0], times, condition)


def due_within(status: Mapping[str, Any], now: datetime, window: timedelta) -> datetime | None:
    """The earliest pending fire time after ``now`` and no later than ``now + window``."""
    moments = [parse_timestamp(status.get(k)) for k in ("nextStart", "nextStop")]
    soon = [m for m in moments if m is not None and now < m <= now + window]
    return min(soon) if soon else None
