"""The catalog tables: written by the operator's repository sync.

The ``repositories`` row itself belongs to the facade's mirror (one writer per table).

A sync replaces all of one repository's catalog rows in a single transaction, so readers see
either the previous catalog or the new one, never a mix.
"""

from __future__ import annotations

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from streamspace.catalog.parse import CatalogPlugin, CatalogTemplate


async def replace_catalog(
    conn: AsyncConnection,
    repository_uid: str,
    templates: list[CatalogTemplate],
    plugins: list[CatalogPlugin],
) -> None:
    """Swap the repository's catalog rows for these (call inside a transaction)."""
    await conn.execute("DELETE FROM catalog_templates WHERE repository_uid = %s", (repository_uid,))
    await conn.execute("DELETE FROM catalog_plugins WHERE repository_uid = %s", (repository_uid,))
    async with conn.cursor() as cur:
        await cur.executemany(
            """
            INSERT INTO catalog_templates (repository_uid, name, display_name, description,
                category, app_type, icon, base_image, tags, manifest, source_path)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    repository_uid,
                    t.name,
                    t.display_name,
                    t.description,
                    t.category,
                    t.app_type,
                    t.icon,
                    t.base_image,
                    list(t.tags),
                    Jsonb(t.manifest),
                    t.source_path,
                )
                for t in templates
            ],
        )
        await cur.executemany(
            """
            INSERT INTO catalog_plugins (repository_uid, name, version, display_name,
                description, category, plugin_type, icon_url, manifest, tags)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            """,
            [
                (
                    repository_uid,
                    p.name,
                    p.version,
                    p.display_name,
                    p.description,
                    p.category,
                    p.plugin_type,
                    p.icon_url,
                    Jsonb(p.manifest),
                    list(p.tags),
                )
                for p in plugins
            ],
        )


async def delete_catalog(conn: AsyncConnection, repository_uid: str) -> None:
    """Forget a deleted repository's catalog rows, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM catalog_templates WHERE repository_uid = %s", (repository_uid,)
        )
        await conn.execute(
            "DELETE FROM catalog_plugins WHERE repository_uid = %s", (repository_uid,)
        )
