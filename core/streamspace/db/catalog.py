"""The catalog tables and the repositories row: written by the operator's repository sync.

A sync replaces all of one repository's catalog rows in a single transaction, so readers see
either the previous catalog or the new one, never a mix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from streamspace.catalog.parse import CatalogPlugin, CatalogTemplate


@dataclass(frozen=True)
class RepositoryRow:
    """The ``repositories`` row of a TemplateRepository (keyed by the object's UID)."""

    uid: str
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
    status: str  # pending | syncing | synced | failed
    message: str | None
    last_sync: datetime | None
    last_sync_commit: str | None
    template_count: int
    plugin_count: int
    resource_version: str
    created_at: datetime


async def upsert_repository(conn: AsyncConnection, row: RepositoryRow) -> None:
    await conn.execute(
        """
        INSERT INTO repositories (uid, id, namespace, name, url, branch, type, auth_type,
            auth_secret, sync_interval, auto_install, suspend, status, message, last_sync,
            last_sync_commit, template_count, plugin_count, resource_version, created_at)
        VALUES (%(uid)s, %(name)s, %(namespace)s, %(name)s, %(url)s, %(branch)s, %(type)s,
            %(auth_type)s, %(auth_secret)s, %(sync_interval)s, %(auto_install)s, %(suspend)s,
            %(status)s, %(message)s, %(last_sync)s, %(last_sync_commit)s, %(template_count)s,
            %(plugin_count)s, %(resource_version)s, %(created_at)s)
        ON CONFLICT (uid) DO UPDATE SET
            url = EXCLUDED.url, branch = EXCLUDED.branch, type = EXCLUDED.type,
            auth_type = EXCLUDED.auth_type, auth_secret = EXCLUDED.auth_secret,
            sync_interval = EXCLUDED.sync_interval, auto_install = EXCLUDED.auto_install,
            suspend = EXCLUDED.suspend, status = EXCLUDED.status, message = EXCLUDED.message,
            last_sync = coalesce(EXCLUDED.last_sync, repositories.last_sync),
            last_sync_commit = coalesce(EXCLUDED.last_sync_commit, repositories.last_sync_commit),
            template_count = EXCLUDED.template_count, plugin_count = EXCLUDED.plugin_count,
            resource_version = EXCLUDED.resource_version, updated_at = now()
        """,
        row.__dict__,
    )


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


async def delete_repository(conn: AsyncConnection, repository_uid: str) -> None:
    """Forget a deleted repository and its catalog rows, in one transaction."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM catalog_templates WHERE repository_uid = %s", (repository_uid,)
        )
        await conn.execute(
            "DELETE FROM catalog_plugins WHERE repository_uid = %s", (repository_uid,)
        )
        await conn.execute("DELETE FROM repositories WHERE uid = %s", (repository_uid,))
