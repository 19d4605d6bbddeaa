"""The OpenAPI schemas of a session's ``schedule`` (issue 19, decisions 180-182).

Kept apart from ``openapi_schemas`` (already long); written out plainly so that module can
import these without a cycle.
"""

from __future__ import annotations

from typing import Any

CRON = r"^\S+(\s+\S+){4}$"

_CRON_TEXT = "A cron expression of five fields (minute hour day-of-month month weekday)"
_FIELDS: dict[str, dict[str, Any]] = {
    "start": {
        "type": "string",
        "description": f"When to start: {_CRON_TEXT}, e.g. 0 8 * * 1-5.",
        "pattern": CRON,
        "maxLength": 128,
        "nullable": True,
    },
    "stop": {
        "type": "string",
        "description": f"When to hibernate: {_CRON_TEXT}, e.g. 0 18 * * 1-5.",
        "pattern": CRON,
        "maxLength": 128,
        "nullable": True,
    },
    "timeZone": {
        "type": "string",
        "description": "The IANA time zone the crons are read in (default UTC).",
        "maxLength": 64,
    },
}

SCHEDULE_REQUEST: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": (
        "Start and stop the session on a timetable; replaces any schedule it has (null on a "
        "PATCH removes it). An invalid cron or an unknown time zone answers 422 with the "
        "field path (schedule.start, schedule.stop, schedule.timeZone)."
    ),
    "properties": _FIELDS,
    "additionalProperties": False,
    "example": {"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "timeZone": "Europe/Berlin"},
}

SCHEDULE_RESPONSE: dict[str, Any] = {
    "type": "object",
    "nullable": True,
    "description": "The session's schedule, null without one.",
    "properties": _FIELDS,
}
