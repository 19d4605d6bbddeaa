"""The plugin tables as the facade reads and writes them: the catalog (``catalog_plugins``, written
by the operator's sync), installed plugins (``installed_plugins``, written by the mirror only) and
ratings (``plugin_ratings``, written here).

Rows are frozen dataclasses; views turn them into the API's camelCase. An installed plugin's
catalog entry is found by (namespace, repository, plugin name) at read time (decision 121).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.rows import class_row

from streamspace_facade.storage.catalog import KEYSET, keyset_params
from streamspace_facade.storage.database import DB_WAIT, Database


@dataclass(frozen=True)
class CatalogPlugin:
    id: int
    name: str
    version: str
    display_name: str
    description: str
    category: str
    plugin_type: str
    icon_url: str | None
    tags: list[str]
    manifest: dict[str, Any]
    install_count: int
    avg_rating: Decimal
    rating_count: int
    updated_at: datetime
    repository_id: str
    repository_url: str
    namespace: str


@dataclass(frozen=True)
class InstalledPlugin:
    uid: str
    id: str
    namespace: str
    repository: str
    plugin_name: str
    version: str | None
    plugin_type: str | None
    enabled: bool
    config: dict[str, Any]
    secret_keys: list[str]
    phase: str | None
    message: str | None
    approved: bool
    approved_permissions: list[str]
    permissions: list[dict[str, Any]]
    events: list[str]
    url: str | None
    secret_name: str | None
    installed_by: str | None
    resource_version: str
    created_at: datetime
    updated_at: datetime
    catalog_id: int | None


@dataclass(frozen=True)
class Rating:
    catalog_id: int
    user_id: str
    rating: int
    review: str | None
    avg_rating: Decimal
    rating_count: int


@dataclass(frozen=True)
class CatalogFilter:
    namespace: str | None
    search: str | None = None
    category: str | None = None
    plugin_type: str | None = None
    tag: str | None = None


_CATALOG_SELECT = """
    SELECT c.id, c.name, c.version, c.display_name, c.description, c.category, c.plugin_type,
           c.icon_url, c.tags, c.manifest, c.install_count, c.avg_rating, c.rating_count,
           c.updated_at, r.id AS repository_id, r.url AS repository_url, r.namespace
"""
_CATALOG_JOIN = " FROM catalog_plugins c JOIN repositories r ON r.uid = c.repository_uid"
_CATALOG_FROM = (
    _CATALOG_JOIN
    + """
    WHERE (%(ns)s::text IS NULL OR r.namespace = %(ns)s)
      AND (%(category)s::text IS NULL OR c.category = %(category)s)
      AND (%(tag)s::text IS NULL OR %(tag)s = ANY(c.tags))
      AND (%(type)s::text IS NULL OR c.plugin_type = %(type)s)
      AND (%(search)s::text IS NULL OR c.name ILIKE %(search)s OR c.display_name ILIKE %(search)s
           OR c.description ILIKE %(search)s)
"""
)
_INSTALLED_SELECT = """
    SELECT p.uid::text AS uid, p.id, p.namespace, p.repository, p.plugin_name, p.version,
           p.plugin_type, p.enabled, p.config, p.secret_keys, p.phase, p.message, p.approved,
           p.approved_permissions, p.permissions, p.events, p.url, p.secret_name,
           p.installed_by, p.resource_version, p.created_at, p.updated_at,
           (SELECT c.id FROM catalog_plugins c JOIN repositories r ON r.uid = c.repository_uid
            WHERE r.namespace = p.namespace AND r.id = p.repository AND c.name = p.plugin_name
            LIMIT 1) AS catalog_id
    FROM installed_plugins p
"""


def like(text: str) -> str:
    """A substring pattern for ILIKE, with the pattern characters of ``text`` escaped."""
    return "%" + re.sub(r"([%_\\])", r"\\\1", text) + "%"


class PluginStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def catalog_page(
        self,
        where: CatalogFilter,
        limit: int,
        offset: int = 0,
        after: tuple[Any, ...] | None = None,
    ) -> tuple[list[CatalogPlugin], int, bool]:
        """A page of the plugin catalog (``limit`` from ``offset``, or after the entry whose
        (display name, name, id) is ``after``), how many match in all, and whether more follow."""
        params = {
            "ns": where.namespace,
            "category": where.category,
            "tag": where.tag,
            "type": where.plugin_type,
            "search": like(where.search) if where.search else None,
            "limit": limit + 1,
            "offset": offset,
            **keyset_params(after),
        }
        rows, total = await self._db.page(
            CatalogPlugin,
            _CATALOG_SELECT
            + _CATALOG_FROM
            + (KEYSET if after else "")
            + " ORDER BY c.display_name, c.name, c.id LIMIT %(limit)s OFFSET %(offset)s",
            "SELECT count(*) " + _CATALOG_FROM,
            params,
        )
        return rows[:limit], total, len(rows) > limit

    async def catalog_entry(self, catalog_id: int, namespace: str | None) -> CatalogPlugin | None:
        return await self._db.row(
            CatalogPlugin,
            _CATALOG_SELECT
            + _CATALOG_JOIN
            + " WHERE c.id = %(id)s AND (%(ns)s::text IS NULL OR r.namespace = %(ns)s)",
            {"id": catalog_id, "ns": namespace},
        )

    async def catalog_by_name(
        self, namespace: str, repository: str, name: str
    ) -> CatalogPlugin | None:
        """The catalog entry a Plugin names (spec.catalogPlugin), in the Plugin's namespace."""
        return await self._db.row(
            CatalogPlugin,
            _CATALOG_SELECT
            + _CATALOG_JOIN
            + " WHERE r.namespace = %s AND r.id = %s AND c.name = %s",
            (namespace, repository, name),
        )

    async def count_install(self, catalog_id: int) -> None:
        async with self._db.connection(DB_WAIT) as conn:
            await conn.execute(
                "UPDATE catalog_plugins SET install_count = install_count + 1 WHERE id = %s",
                (catalog_id,),
            )

    async def installed(self, namespace: str | None) -> list[InstalledPlugin]:
        return await self._db.rows(
            InstalledPlugin,
            _INSTALLED_SELECT + " WHERE (%(ns)s::text IS NULL OR p.namespace = %(ns)s)"
            " ORDER BY p.id, p.namespace",
            {"ns": namespace},
        )

    async def installed_one(self, namespace: str, name: str) -> InstalledPlugin | None:
        return await self._db.row(
            InstalledPlugin,
            _INSTALLED_SELECT + " WHERE p.namespace = %s AND p.id = %s",
            (namespace, name),
        )

    async def rate(
        self, catalog_id: int, user: str, rating: int, review: str | None
    ) -> Rating | None:
        """Store the user's rating of a catalog plugin (replacing theirs) and rewrite the
        entry's average and count in the same transaction; None if there is no such entry.

        The catalog row is locked first, so concurrent ratings of one plugin compute their
        aggregates one after the other and the last one written counts every rating."""
        async with self._db.connection(DB_WAIT) as conn, conn.transaction():
            cur = await conn.execute(
                "SELECT id FROM catalog_plugins WHERE id = %s FOR UPDATE", (catalog_id,)
            )
            if await cur.fetchone() is None:
                return None
            await conn.execute(
                "INSERT INTO plugin_ratings (plugin_id, user_id, rating, review_text) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (plugin_id, user_id) DO UPDATE SET "
                "rating = EXCLUDED.rating, review_text = EXCLUDED.review_text, updated_at = now()",
                (catalog_id, user, rating, review),
            )
            async with conn.cursor(row_factory=class_row(Rating)) as rows:
                await rows.execute(
                    """
                    WITH totals AS (
                        SELECT coalesce(round(avg(rating), 2), 0) AS avg_rating,
                               count(*)::int AS rating_count
                        FROM plugin_ratings WHERE plugin_id = %(id)s)
                    UPDATE catalog_plugins c
                    SET avg_rating = t.avg_rating, rating_count = t.rating_count
                    FROM totals t WHERE c.id = %(id)s
                    RETURNING c.id AS catalog_id, %(user)s::text AS user_id,
                              %(rating)s::int AS rating, %(review)s::text AS review,
                              c.avg_rating, c.rating_count
                    """,
                    {"id": catalog_id, "user": user, "rating": rating, "review": review},
                )
                return await rows.fetchone()
