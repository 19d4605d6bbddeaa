"""``catalog_templates`` (written by the operator's repository sync): the catalog's pages,
filters and search, and what installing an entry needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streamspace_facade.storage.database import DB_WAIT, Database


@dataclass(frozen=True)
class CatalogEntry:
    """A catalog row as lists show it (never its ``manifest``: only installing reads that)."""

    id: int
    name: str
    display_name: str
    description: str
    category: str
    app_type: str
    icon: str | None
    base_image: str
    tags: list[str]
    install_count: int
    source_path: str
    updated_at: datetime
    repository_id: str
    repository_url: str


@dataclass(frozen=True)
class CatalogPage:
    entries: list[CatalogEntry]
    total: int  # every match, on all pages
    more: bool  # entries follow this page


@dataclass(frozen=True)
class InstallSource:
    """What a Template made from a catalog entry is built from."""

    name: str
    manifest: dict[str, Any]
    repository: str  # the repository's name (its TemplateRepository)


@dataclass(frozen=True)
class CatalogFilter:
    """The catalog's filters; None matches anything. ``search`` is plain text (not a pattern)
    found in the name, display name or description."""

    namespace: str | None = None
    category: str | None = None
    tag: str | None = None
    app_type: str | None = None
    search: str | None = None


_COLUMNS = (
    "c.id, c.name, c.display_name, c.description, c.category, c.app_type, c.icon, "
    "c.base_image, c.tags, c.install_count, c.source_path, c.updated_at, "
    "r.id AS repository_id, r.url AS repository_url"
)

_FROM = """
    FROM catalog_templates c JOIN repositories r ON r.uid = c.repository_uid
    WHERE (%(ns)s::text IS NULL OR r.namespace = %(ns)s)
      AND (%(category)s::text IS NULL OR c.category = %(category)s)
      AND (%(tag)s::text IS NULL OR %(tag)s = ANY(c.tags))
      AND (%(app_type)s::text IS NULL OR c.app_type = %(app_type)s)
      AND (%(search)s::text IS NULL OR c.name ILIKE %(search)s OR c.display_name ILIKE %(search)s
           OR c.description ILIKE %(search)s)
"""


KEYSET = """AND (c.display_name, c.name, c.id)
    > (%(after_display)s::text, %(after_name)s::text, %(after_id)s::bigint)
"""
"""Keyset paging of a catalog (``c``) ordered by display name, name and id (the comparison
uses the ORDER BY's collation, so pages follow the order the list is shown in)."""


def keyset_params(after: tuple[Any, ...] | None) -> dict[str, Any]:
    """The parameters of ``KEYSET`` for the sort key ``after`` (a continue token's)."""
    display, name, entry = after if after is not None and len(after) == 3 else (None,) * 3
    return {"after_display": display, "after_name": name, "after_id": entry}


def _like(text: str) -> str:
    """``text`` as an ILIKE pattern matching it anywhere, its own wildcards taken literally."""
    return "%" + re.sub(r"([%_\\])", r"\\\1", text) + "%"


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def page(
        self,
        where: CatalogFilter,
        *,
        limit: int,
        offset: int = 0,
        after: tuple[Any, ...] | None = None,
    ) -> CatalogPage:
        """One page of the matching entries, by display name (``limit`` from ``offset``, or
        after the entry whose (display name, name, id) is ``after``), and how many match."""
        params = {
            "ns": where.namespace,
            "category": where.category,
            "tag": where.tag,
            "app_type": where.app_type,
            "search": _like(where.search) if where.search else None,
            "limit": limit + 1,
            "offset": offset,
            **keyset_params(after),
        }
        entries, total = await self._db.page(
            CatalogEntry,
            f"SELECT {_COLUMNS} {_FROM} {KEYSET if after else ''}"
            "ORDER BY c.display_name, c.name, c.id LIMIT %(limit)s OFFSET %(offset)s",
            "SELECT count(*) " + _FROM,
            params,
        )
        return CatalogPage(entries[:limit], total, len(entries) > limit)

    async def install_source(self, entry: int, namespace: str | None) -> InstallSource | None:
        """What entry ``entry`` installs, if it exists (in ``namespace``'s repositories)."""
        return await self._db.row(
            InstallSource,
            "SELECT c.name, c.manifest, r.id AS repository FROM catalog_templates c "
            "JOIN repositories r ON r.uid = c.repository_uid "
            "WHERE c.id = %s AND (%s::text IS NULL OR r.namespace = %s)",
            (entry, namespace, namespace),
        )

    async def count_install(self, entry: int) -> None:
        async with self._db.connection(DB_WAIT) as conn:
            await conn.execute(
                "UPDATE catalog_templates SET install_count = install_count + 1 WHERE id = %s",
                (entry,),
            )

    async def size(self, *, wait: float) -> int:
        """How many entries the catalog holds (all namespaces)."""
        async with self._db.connection(wait) as conn:
            cur = await conn.execute("SELECT count(*) FROM catalog_templates")
            row = await cur.fetchone()
        return int(row[0]) if row else 0
