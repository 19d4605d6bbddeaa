"""``audit_log``: records of mutating requests, stored in batches (the statement is
``streamspace.db.audit``'s, which the operator shares) and read back a page at a time by the
admin route ``GET /api/v1/admin/audit``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streamspace.db import audit
from streamspace.db.audit import Record
from streamspace_facade.storage.database import Database

COLUMNS = 'id, user_id, action, resource_type, resource_id, changes, "timestamp", ip_address'


@dataclass(frozen=True)
class AuditRow:
    id: int
    user_id: str | None
    action: str
    resource_type: str
    resource_id: str | None
    changes: dict[str, Any]
    timestamp: datetime
    ip_address: str | None


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, records: Sequence[Record], *, wait: float) -> None:
        """Store ``records`` in one transaction: all of them, or none."""
        async with self._db.connection(wait) as conn, conn.transaction():
            await audit.insert(conn, records)

    async def page(
        self, user: str | None, action: str | None, limit: int, after: int | None
    ) -> tuple[list[AuditRow], int, bool]:
        """A page of the audit log, newest first (older than id ``after`` when given), how many
        rows match in all, and whether more follow."""
        clauses = [
            clause
            for clause, value in (("user_id = %(user)s", user), ("action = %(action)s", action))
            if value is not None
        ]
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        if after is not None:
            clauses.append("id < %(after)s")
        keyset = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params = {"user": user, "action": action, "after": after, "limit": limit + 1}
        rows, total = await self._db.page(
            AuditRow,
            f"SELECT {COLUMNS} FROM audit_log{keyset}"  # noqa: S608 (constants)
            " ORDER BY id DESC LIMIT %(limit)s",
            f"SELECT count(*) FROM audit_log{where}",  # noqa: S608
            params,
        )
        return rows[:limit], total, len(rows) > limit
