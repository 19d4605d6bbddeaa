"""``audit_log``: records of mutating requests, stored in batches (the statement is
``streamspace.db.audit``'s, which the operator shares)."""

from __future__ import annotations

from collections.abc import Sequence

from streamspace.db import audit
from streamspace.db.audit import Record
from streamspace_facade.storage.database import Database


class AuditStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def insert(self, records: Sequence[Record], *, wait: float) -> None:
        """Store ``records`` in one transaction: all of them, or none."""
        async with self._db.connection(wait) as conn, conn.transaction():
            await audit.insert(conn, records)
