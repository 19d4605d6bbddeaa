"""``repositories`` (a mirror table of TemplateRepositories, written by the mirror): the
repository list the API serves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg.rows import class_row

from streamspace_facade.storage.database import DB_WAIT, Database


@dataclass(frozen=True)
class RepositoryRow:
    id: str
    name: str
    namespace: str
    url: str
    branch: str
    type: str
    auth_type: str
    auth_secret: str | None
    sync_interval: str | None
    auto_install: bool
    suspend: bool
    status: str
    message: str | None
    last_sync: datetime | None
    last_sync_commit: str | None
    template_count: int
    plugin_count: int
    created_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> RepositoryRow:
        """The row a TemplateRepository makes (``streamspace.db.mirror.repository_row``), for
        answering with an object just written before the mirror has it."""
        return cls(**{f.name: row[f.name] for f in fields(cls)})


# the row's fields, so the two cannot drift apart
_SELECT = "SELECT " + ", ".join(f.name for f in fields(RepositoryRow)) + " FROM repositories"  # noqa: S608


class RepositoryStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def list(self, namespace: str | None, kind: str | None = None) -> list[RepositoryRow]:
        """The repositories (of ``namespace``, None: all; of type ``kind``, None: any), by
        name."""
        async with (
            self._db.connection(DB_WAIT) as conn,
            conn.cursor(row_factory=class_row(RepositoryRow)) as cur,
        ):
            await cur.execute(
                _SELECT + " WHERE (%(ns)s::text IS NULL OR namespace = %(ns)s)"
                " AND (%(type)s::text IS NULL OR type = %(type)s) ORDER BY name",
                {"ns": namespace, "type": kind},
            )
            return await cur.fetchall()
