"""The catalog tables: written by the operator's repository sync, read by its Plugin reconcile.

The ``repositories`` row itself belongs to the facade's mirror (one writer per table).

A sync updates one repository's catalog rows in a single transaction, so readers see either the
previous catalog or the new one, never a mix. Rows are upserted by (repository, name) and only
those whose entry disappeared are deleted: a catalog id, its install count (and a plugin's
ratings and installations, which refer to its id) survive every re-sync (decision 49).
"""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from streamspace.catalog.parse import CatalogPlugin, CatalogTemplate

# A row changes (and its updated_at moves) only when what the repository says about it changed.
_UPSERT_TEMPLATE = """
    INSERT INTO catalog_templates AS c (repository_uid, name, display_name, description,
        category, app_type, icon, base_image, tags, manifest, source_path)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (repository_uid, name) DO UPDATE SET
        display_name = EXCLUDED.display_name, description = EXCLUDED.description,
        category = EXCLUDED.category, app_type = EXCLUDED.app_type, icon = EXCLUDED.icon,
        base_image = EXCLUDED.base_image, tags = EXCLUDED.tags, manifest = EXCLUDED.manifest,
        source_path = EXCLUDED.source_path, updated_at = now()
    WHERE (c.display_name, c.description, c.category, c.app_type, c.icon, c.base_image, c.tags,
           c.manifest, c.source_path)
      IS DISTINCT FROM (EXCLUDED.display_name, EXCLUDED.description, EXCLUDED.category,
           EXCLUDED.app_type, EXCLUDED.icon, EXCLUDED.base_image, EXCLUDED.tags,
           EXCLUDED.manifest, EXCLUDED.source_path)
"""

_UPSERT_PLUGIN = """
    INSERT INTO catalog_plugins AS c (repository_uid, name, version, display_name,
        description, category, plugin_type, icon_url, manifest, tags)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (repository_uid, name) DO UPDATE SET
        version = EXCLUDED.version, display_name = EXCLUDED.display_name,
        description = EXCLUDED.description, category = EXCLUDED.category,
        plugin_type = EXCLUDED.plugin_type, icon_url = EXCLUDED.icon_url,
        manifest = EXCLUDED.manifest, tags = EXCLUDED.tags, updated_at = now()
    WHERE (c.version, c.display_name, c.description, c.category, c.plugin_type, c.icon_url,
           c.manifest, c.tags)
      IS DISTINCT FROM (EXCLUDED.version, EXCLUDED.display_name, EXCLUDED.description,
           EXCLUDED.category, EXCLUDED.plugin_type, EXCLUDED.icon_url, EXCLUDED.manifest,
           EXCLUDED.tags)
"""


async def replace_catalog(
    conn: AsyncConnection,
    repository_uid: str,
    templates: list[CatalogTemplate],
    plugins: list[CatalogPlugin],
) -> None:
    """Make the repository's catalog rows say what these entries say (call inside a
    transaction): new entries are inserted, changed ones updated in place, and rows whose entry
    is gone deleted."""
    await conn.execute(
        "DELETE FROM catalog_templates WHERE repository_uid = %s AND NOT (name = ANY(%s))",
        (repository_uid, [t.name for t in templates]),
    )
    await conn.execute(
        "DELETE FROM catalog_plugins WHERE repository_uid = %s AND NOT (name = ANY(%s))",
        (repository_uid, [p.name for p in plugins]),
    )
    async with conn.cursor() as cur:
        await cur.executemany(
            _UPSERT_TEMPLATE,
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
            _UPSERT_PLUGIN,
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


async def catalog_plugin(
    conn: AsyncConnection, repository_uid: str, name: str
) -> tuple[int, str, dict[str, Any]] | None:
    """The catalog entry ``name`` of one repository: (id, version, manifest), None if absent."""
    cur = await conn.execute(
        "SELECT id, version, manifest FROM catalog_plugins WHERE repository_uid = %s AND name = %s",
        (repository_uid, name),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return int(row[0]), str(row[1]), dict(row[2])
