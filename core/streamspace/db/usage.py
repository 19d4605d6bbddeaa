"""Usage history: the ``session_transitions`` rows the mirror writes beside the ``sessions``
rows, and the report that integrates them (``GET /api/v1/analytics/usage``).

A transition is written when a session's row appears, when its phase changes, when the requests
of its running workload change, and when the row goes (phase ``Deleted``). Its time is when the
mirror saw the change, except where the status says when it happened (``startedAt`` entering
Running, ``hibernatedAt`` entering Hibernated, the creation time for a new Pending session), so
a resync after the facade was away does not
bill the outage to the wrong phase; a time is never put before the session's previous one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection

from streamspace.quantities import parse_quantity

Row = Mapping[str, Any]
DELETED = "Deleted"
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu.intel.com/i915")

INSERT = """
INSERT INTO session_transitions
    (session_uid, namespace, session_id, user_id, template_name, phase, cpu_millis,
     memory_bytes, gpus, at)
SELECT %(uid)s, %(namespace)s, %(id)s, %(user_id)s, %(template_name)s, %(phase)s,
       %(cpu_millis)s, %(memory_bytes)s, %(gpus)s,
       greatest(coalesce(%(at)s, now()),
                coalesce((SELECT max(at) FROM session_transitions WHERE session_uid = %(uid)s),
                         '-infinity'))
"""


def _amount(requests: Mapping[str, Any], name: str, scale: int) -> int:
    raw = requests.get(name)
    if raw is None:
        return 0
    try:
        return int(parse_quantity(raw).value * scale)
    except ValueError:
        return 0


def requested(requests: Mapping[str, Any]) -> tuple[int, int, int]:
    """CPU millicores, memory bytes and GPUs of a container's ``requests``."""
    gpus = sum(_amount(requests, name, 1) for name in GPU_RESOURCES)
    return _amount(requests, "cpu", 1000), _amount(requests, "memory", 1), gpus


def _phase(row: Row | None) -> str:
    return DELETED if row is None else str(row.get("phase") or "Pending")


def _when(row: Row, phase: str, first: bool) -> datetime | None:
    if first and phase == "Pending":
        return row.get("created_at")
    if phase == "Running":
        return row.get("started_at")
    if phase == "Hibernated":
        return row.get("hibernated_at")
    return None


def transitions(changes: Iterable[tuple[Row | None, Row | None]]) -> list[dict[str, Any]]:
    """The history rows that session row changes mean (pure)."""
    out = []
    for old, new in changes:
        row = new if new is not None else old
        if row is None:
            continue
        phase = _phase(new)
        requests = dict((new or {}).get("requests") or {}) if phase == "Running" else {}
        resized = old is not None and dict(old.get("requests") or {}) != requests
        same = old is not None and new is not None and _phase(old) == phase
        if same and not (phase == "Running" and resized):
            continue
        cpu, memory, gpus = requested(requests)
        out.append(
            {
                "uid": row["uid"],
                "namespace": row["namespace"],
                "id": row["id"],
                "user_id": row["user_id"],
                "template_name": row["template_name"],
                "phase": phase,
                "cpu_millis": cpu,
                "memory_bytes": memory,
                "gpus": gpus,
                "at": None if new is None else _when(new, phase, old is None),
            }
        )
    return out


async def record(
    conn: AsyncConnection[Any], changes: Iterable[tuple[Row | None, Row | None]]
) -> None:
    """Store the history rows of ``changes`` (inside the caller's transaction)."""
    rows = transitions(changes)
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(INSERT, rows)


# --- the report ---------------------------------------------------------------------------------

GROUPS = {"user": "user_id", "template": "template_name", "namespace": "namespace"}

REPORT = """
WITH spans AS (
    SELECT user_id, template_name, namespace, phase, cpu_millis, memory_bytes, gpus, at,
           coalesce(lead(at) OVER (PARTITION BY session_uid ORDER BY at, id), %(now)s) AS until
    FROM session_transitions
    WHERE (%(user)s::text IS NULL OR user_id = %(user)s)
      AND (%(ns)s::text IS NULL OR namespace = %(ns)s)
), clipped AS (
    SELECT {key} AS key, phase, cpu_millis, memory_bytes, gpus,
           extract(epoch FROM least(until, %(to)s) - greatest(at, %(from)s)) / 3600.0 AS hours
    FROM spans
    WHERE at < %(to)s AND until > %(from)s AND phase IN ('Running', 'Hibernated')
)
SELECT key,
       coalesce(sum(hours) FILTER (WHERE phase = 'Running'), 0) AS running_hours,
       coalesce(sum(hours) FILTER (WHERE phase = 'Hibernated'), 0) AS hibernated_hours,
       coalesce(sum(hours * cpu_millis / 1000.0) FILTER (WHERE phase = 'Running'), 0)
           AS cpu_hours,
       coalesce(sum(hours * memory_bytes / 1073741824.0) FILTER (WHERE phase = 'Running'), 0)
           AS memory_gib_hours,
       coalesce(sum(hours * gpus) FILTER (WHERE phase = 'Running'), 0) AS gpu_hours
FROM clipped
WHERE hours > 0
GROUP BY key
ORDER BY key
"""


@dataclass(frozen=True)
class UsageRow:
    key: str
    running_hours: Decimal
    hibernated_hours: Decimal
    cpu_hours: Decimal
    memory_gib_hours: Decimal
    gpu_hours: Decimal


def report_query(group_by: str) -> str:
    """The report's statement for ``group_by`` (a key of ``GROUPS``; KeyError otherwise)."""
    return REPORT.format(key=GROUPS[group_by])
