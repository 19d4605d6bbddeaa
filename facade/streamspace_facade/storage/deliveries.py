"""Plugin deliveries (``plugin_deliveries`` with their ``plugin_events``): the worker's queue and
the delivery log of the REST API. The rows are inserted by the mirror writer (``streamspace.db``
``outbox``); this store claims, settles, lists, redelivers and prunes them.

Claiming takes due pending deliveries with ``FOR UPDATE SKIP LOCKED`` and leases them: the
attempt is counted and ``next_attempt_at`` moves a lease ahead, so a worker that dies while
posting leaves its claims to be taken again once the lease has run out (at least once). A
delivery is due only when no older pending one of the same plugin and subject exists, so each
subject's events arrive in order; a claimed head keeps the ones behind it waiting.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import class_row

from streamspace_facade.storage.database import Database


@dataclass(frozen=True)
class Due:
    """A claimed delivery with the event it carries."""

    id: uuid.UUID
    plugin_uid: uuid.UUID
    plugin_namespace: str
    plugin_name: str
    url: str
    attempts: int  # this attempt's number, from 1
    event_id: uuid.UUID
    type: str
    subject: str
    namespace: str
    data: dict[str, Any]
    time: datetime


@dataclass(frozen=True)
class Delivery:
    """One line of a plugin's delivery log."""

    seq: int
    id: uuid.UUID
    event_id: uuid.UUID
    type: str
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    last_status: int | None
    latency_ms: float | None
    delivered_at: datetime | None
    created_at: datetime


CLAIM = """
WITH due AS (
    SELECT d.id FROM plugin_deliveries d
    WHERE d.status = 'pending' AND d.next_attempt_at <= now()
      AND NOT EXISTS (
          SELECT 1 FROM plugin_deliveries o
          WHERE o.status = 'pending' AND o.plugin_uid = d.plugin_uid
            AND o.subject = d.subject AND o.seq < d.seq)
    ORDER BY d.seq
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE plugin_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = now() + %(lease)s
FROM due, plugin_events e
WHERE d.id = due.id AND e.id = d.event_id
RETURNING d.id, d.plugin_uid, d.plugin_namespace, d.plugin_name, d.url, d.attempts,
          e.id AS event_id, e.type, e.subject, e.namespace, e.data, e."time"
"""

DELIVERED = """
UPDATE plugin_deliveries d
SET status = 'delivered', delivered_at = now(), last_status = %(code)s, last_error = NULL,
    latency_ms = 1000 * extract(epoch FROM now() - e."time")
FROM plugin_events e
WHERE d.id = %(id)s AND d.attempts = %(attempts)s AND d.status = 'pending'
  AND e.id = d.event_id
RETURNING d.latency_ms
"""

FAILED = """
UPDATE plugin_deliveries
SET status = %(status)s, next_attempt_at = coalesce(%(next)s, now()),
    last_status = %(code)s, last_error = %(error)s
WHERE id = %(id)s AND attempts = %(attempts)s AND status = 'pending'
"""

LOG_COLUMNS = """
    d.seq, d.id, d.event_id, e.type, d.subject, d.status, d.attempts, d.next_attempt_at,
    d.last_error, d.last_status, d.latency_ms, d.delivered_at, d.created_at
"""


class DeliveryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, limit: int, lease: timedelta) -> list[Due]:
        """Lease up to ``limit`` due deliveries, oldest first, one per plugin and subject."""
        async with (
            self._db.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=class_row(Due)) as cur,
        ):
            await cur.execute(CLAIM, {"limit": limit, "lease": lease})
            return await cur.fetchall()

    async def delivered(self, due: Due, code: int) -> float | None:
        """Settle a delivery the receiver accepted; its latency in ms (None: settled already)."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                DELIVERED, {"id": due.id, "attempts": due.attempts, "code": code}
            )
            row = await cur.fetchone()
        return None if row is None else float(row[0])

    async def failed(
        self, due: Due, status: str, next_attempt: datetime | None, code: int | None, error: str
    ) -> None:
        """Record a failed attempt: ``pending`` again at ``next_attempt``, or ``dead``."""
        async with self._db.connection() as conn:
            await conn.execute(
                FAILED,
                {
                    "id": due.id,
                    "attempts": due.attempts,
                    "status": status,
                    "next": next_attempt,
                    "code": code,
                    "error": error[:1000],
                },
            )

    async def pending(self) -> int:
        """Deliveries not yet settled (the outbox depth)."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM plugin_deliveries WHERE status = 'pending'"
            )
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def log(
        self,
        namespace: str,
        plugin: str,
        status: str | None,
        limit: int,
        *,
        offset: int = 0,
        after: int | None = None,
    ) -> tuple[list[Delivery], int, bool]:
        """A page of a plugin's deliveries, newest first (``limit`` from ``offset``, or older
        than ``seq`` ``after``), how many there are in all, and whether more follow."""
        where = "d.plugin_namespace = %(ns)s AND d.plugin_name = %(name)s" + (
            " AND d.status = %(status)s" if status else ""
        )
        keyset = " AND d.seq < %(after)s" if after is not None else ""
        params = {
            "ns": namespace,
            "name": plugin,
            "status": status,
            "limit": limit + 1,
            "off": offset,
            "after": after,
        }
        rows, total = await self._db.page(
            Delivery,
            f"SELECT {LOG_COLUMNS} FROM plugin_deliveries d"  # noqa: S608 (constants)
            f" JOIN plugin_events e ON e.id = d.event_id WHERE {where}{keyset}"
            " ORDER BY d.seq DESC LIMIT %(limit)s OFFSET %(off)s",
            f"SELECT count(*) FROM plugin_deliveries d WHERE {where}",  # noqa: S608
            params,
        )
        return rows[:limit], total, len(rows) > limit

    async def known(self, namespace: str, plugin: str) -> bool:
        """The plugin is installed, or was and has deliveries left in the log."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "SELECT EXISTS (SELECT 1 FROM installed_plugins WHERE namespace = %(ns)s"
                " AND id = %(name)s) OR EXISTS (SELECT 1 FROM plugin_deliveries"
                " WHERE plugin_namespace = %(ns)s AND plugin_name = %(name)s)",
                {"ns": namespace, "name": plugin},
            )
            row = await cur.fetchone()
        return bool(row and row[0])

    async def get(self, namespace: str, plugin: str, delivery_id: uuid.UUID) -> Delivery | None:
        return await self._db.row(
            Delivery,
            f"SELECT {LOG_COLUMNS} FROM plugin_deliveries d"  # noqa: S608 (constants)
            " JOIN plugin_events e ON e.id = d.event_id"
            " WHERE d.plugin_namespace = %s AND d.plugin_name = %s AND d.id = %s",
            (namespace, plugin, delivery_id),
        )

    async def redeliver(self, namespace: str, plugin: str, delivery_id: uuid.UUID) -> bool:
        """A dead delivery goes again (a fresh retry budget); False if it is not dead."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "UPDATE plugin_deliveries SET status = 'pending', attempts = 0,"
                " next_attempt_at = now(), last_error = NULL"
                " WHERE plugin_namespace = %s AND plugin_name = %s AND id = %s"
                " AND status = 'dead'",
                (namespace, plugin, delivery_id),
            )
            return cur.rowcount == 1

    async def prune(self, retention: timedelta) -> int:
        """Drop events older than ``retention`` whose deliveries are all settled."""
        async with self._db.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM plugin_events e WHERE e.created_at < now() - %s"
                " AND NOT EXISTS (SELECT 1 FROM plugin_deliveries d"
                " WHERE d.event_id = e.id AND d.status = 'pending')",
                (retention,),
            )
            return cur.rowcount
