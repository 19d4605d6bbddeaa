"""The ``audit_log`` table: one row per authenticated change made through the API."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class Record:
    """One audit row; ``at`` is when the request was served, not when the row was written."""

    user: str | None
    action: str
    resource_type: str
    resource_id: str | None
    changes: dict[str, Any]
    at: datetime
    ip_address: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "action": self.action,
            "resourceType": self.resource_type,
            "resourceId": self.resource_id,
            "changes": self.changes,
            "timestamp": self.at.isoformat(),
        }


async def insert(conn: AsyncConnection, records: Sequence[Record]) -> None:
    """Store ``records``, in order, in one statement."""
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO audit_log (user_id, action, resource_type, resource_id, changes,"
            ' "timestamp", ip_address) VALUES (%s, %s, %s, %s, %s, %s, %s)',
            [
                (
                    r.user,
                    r.action,
                    r.resource_type,
                    r.resource_id,
                    Jsonb(r.changes),
                    r.at,
                    r.ip_address,
                )
                for r in records
            ],
        )
