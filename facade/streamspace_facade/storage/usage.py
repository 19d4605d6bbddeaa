"""``session_transitions`` read back as a usage report (the statement is
``streamspace.db.usage``'s; the mirror writes the rows)."""

from __future__ import annotations

from datetime import datetime

from streamspace.db.usage import UsageRow, report_query
from streamspace_facade.storage.database import Database


class UsageStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def report(
        self,
        group_by: str,
        start: datetime,
        end: datetime,
        now: datetime,
        *,
        user: str | None = None,
        namespace: str | None = None,
    ) -> list[UsageRow]:
        """Hours per ``group_by`` key between ``start`` and ``end`` (the present counted up to
        ``now``), of ``user`` and ``namespace`` only when given."""
        params = {"from": start, "to": end, "now": now, "user": user, "ns": namespace}
        return await self._db.rows(UsageRow, report_query(group_by), params)
