"""The mirror tables: ``sessions``, ``connections``, ``repositories`` and ``installed_plugins``
follow their CRs.

Rows are keyed by the object's UID and written by one writer at a time (the facade replica that
holds the mirror lock). Writes are idempotent and ordered: an upsert carrying an older
``resourceVersion`` than the stored row is ignored, so a late watch event can never roll a row
back behind a fresher read. An object being deleted (``deletionTimestamp`` set) is already gone
as far as the mirror is concerned.

Each write compares the row it replaces with the row it stores and records the plugin events
that change means (``streamspace.db.outbox``) in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from streamspace.conditions import parse_timestamp
from streamspace.db import outbox, usage

STATUS_WORDS = {"Pending": "pending", "Syncing": "syncing", "Ready": "synced", "Failed": "failed"}
"""TemplateRepository ``status.phase`` → the API's repository status word."""

Row = dict[str, Any]


def _created(meta: Mapping[str, Any]) -> datetime:
    return parse_timestamp(meta.get("creationTimestamp")) or datetime.now(UTC)


def session_row(obj: Mapping[str, Any]) -> Row:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return {
        "uid": meta["uid"],
        "id": meta["name"],
        "namespace": meta["namespace"],
        "user_id": str(spec.get("user", "")),
        "template_name": str(spec.get("template", "")),
        "state": str(spec.get("state", "running")),
        "phase": status.get("phase"),
        "app_type": status.get("appType"),
        "active_connections": int(status.get("activeConnections") or 0),
        "url": status.get("url"),
        "pod_name": status.get("podName"),
        "tags": [str(t) for t in spec.get("tags") or []],
        "resources": dict(spec.get("resources") or {}),
        "requests": dict((status.get("resources") or {}).get("requests") or {}),
        "persistent_home": bool(spec.get("persistentHome", True)),
        "idle_timeout": spec.get("idleTimeout"),
        "max_session_duration": spec.get("maxSessionDuration"),
        "last_activity": parse_timestamp(status.get("lastActivity")),
        "idle_deadline": parse_timestamp(status.get("idleDeadline")),
        "started_at": parse_timestamp(status.get("startedAt")),
        "hibernated_at": parse_timestamp(status.get("hibernatedAt")),
        "resource_version": str(meta.get("resourceVersion", "")),
        "created_at": _created(meta),
    }


def connection_row(obj: Mapping[str, Any]) -> Row:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    return {
        "uid": meta["uid"],
        "id": meta["name"],
        "namespace": meta["namespace"],
        "session_id": str(spec.get("session", "")),
        "user_id": str(spec.get("user", "")),
        "client_ip": spec.get("clientIP"),
        "user_agent": spec.get("userAgent"),
        "state": str(status.get("state") or "active"),
        "connected_at": parse_timestamp(status.get("connectedAt")),
        "last_heartbeat": parse_timestamp(status.get("lastHeartbeat")),
        "resource_version": str(meta.get("resourceVersion", "")),
        "created_at": _created(meta),
    }


def repository_row(obj: Mapping[str, Any]) -> Row:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    auth = spec.get("auth") or {}
    return {
        "uid": meta["uid"],
        "id": meta["name"],
        "namespace": meta["namespace"],
        "name": meta["name"],
        "url": str(spec.get("url", "")),
        "branch": str(spec.get("branch", "main")),
        "type": str(spec.get("type", "template")),
        "auth_type": str(auth.get("type", "none")),
        "auth_secret": (auth.get("secretRef") or {}).get("name"),
        "sync_interval": spec.get("syncInterval"),
        "auto_install": bool(spec.get("autoInstall", False)),
        "suspend": bool(spec.get("suspend", False)),
        "status": STATUS_WORDS.get(str(status.get("phase")), "pending"),
        "message": status.get("message"),
        "last_sync": parse_timestamp(status.get("lastSyncTime")),
        "last_sync_commit": status.get("lastSyncCommit"),
        "template_count": int(status.get("templateCount") or 0),
        "plugin_count": int(status.get("pluginCount") or 0),
        "resource_version": str(meta.get("resourceVersion", "")),
        "created_at": _created(meta),
    }


INSTALLED_BY = "stream.space/installed-by"
"""On a Plugin the API installed: who installed it."""
SECRET_KEYS = "stream.space/secret-config"  # noqa: S105 (an annotation name)
"""On a Plugin the API installed or configured: the secret config properties that have a value
(comma-separated top-level names; the values are in the plugin's Secret only)."""


def _condition_true(status: Mapping[str, Any], kind: str) -> bool:
    return any(
        isinstance(c, Mapping) and c.get("type") == kind and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _without_nul(value: Any) -> Any:
    """``value`` without NUL characters, which jsonb cannot hold (a Plugin applied with kubectl
    may carry any JSON in its config; its row must still be written)."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {str(k).replace("\x00", ""): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def plugin_row(obj: Mapping[str, Any]) -> Row:
    meta, spec, status = obj["metadata"], obj.get("spec") or {}, obj.get("status") or {}
    catalog = spec.get("catalogPlugin") or {}
    annotations = meta.get("annotations") or {}
    secret_keys = str(annotations.get(SECRET_KEYS) or "")
    return {
        "uid": meta["uid"],
        "id": meta["name"],
        "namespace": meta["namespace"],
        "repository": str(catalog.get("repository", "")),
        "plugin_name": str(catalog.get("name", "")),
        "version": status.get("version") or catalog.get("version"),
        "plugin_type": status.get("pluginType"),
        "enabled": bool(spec.get("enabled", True)),
        "config": _without_nul(dict(spec.get("config") or {})),
        "secret_keys": sorted({k for k in secret_keys.split(",") if k}),
        "phase": status.get("phase"),
        "message": status.get("message"),
        "approved": _condition_true(status, "Approved"),
        "approved_permissions": [str(p) for p in spec.get("approvedPermissions") or []],
        "permissions": [
            {"name": str(p.get("name", "")), "risk": str(p.get("risk", ""))}
            for p in status.get("permissions") or []
            if isinstance(p, Mapping)
        ],
        "events": [str(e) for e in status.get("events") or []],
        "url": status.get("url"),
        "secret_name": status.get("secretName"),
        "installed_by": annotations.get(INSTALLED_BY),
        "resource_version": str(meta.get("resourceVersion", "")),
        "created_at": _created(meta),
    }


JSON_LISTS = frozenset({"permissions"})
"""Columns of type jsonb whose values are lists (a dict always goes as jsonb)."""


@dataclass(frozen=True)
class Table:
    """A mirrored kind: its table, CRD plural and how an object becomes a row."""

    name: str
    kind: str
    plural: str
    row: Callable[[Mapping[str, Any]], Row]


SESSIONS = Table("sessions", "Session", "sessions", session_row)
CONNECTIONS = Table("connections", "Connection", "connections", connection_row)
REPOSITORIES = Table("repositories", "TemplateRepository", "templaterepositories", repository_row)
PLUGINS = Table("installed_plugins", "Plugin", "plugins", plugin_row)
TABLES = (SESSIONS, CONNECTIONS, REPOSITORIES, PLUGINS)

# Newer-or-equal wins. resourceVersions are opaque to clients in general, but etcd-backed ones
# are integers; when both are, an older version never overwrites a newer one.
_NEWER = """
    NOT ({table}.resource_version ~ '^[0-9]+$' AND EXCLUDED.resource_version ~ '^[0-9]+$'
         AND EXCLUDED.resource_version::numeric < {table}.resource_version::numeric)
"""


def _upsert_statement(table: Table, columns: Iterable[str]) -> sql.Composed:
    cols = [c for c in columns if c != "uid"]
    return sql.SQL(
        "INSERT INTO {table} (uid, {cols}) VALUES (%(uid)s, {values}) "
        "ON CONFLICT (uid) DO UPDATE SET {updates}, updated_at = now() WHERE {newer} "
        "RETURNING *"
    ).format(
        table=sql.Identifier(table.name),
        cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols),
        values=sql.SQL(", ").join(sql.Placeholder(c) for c in cols),
        updates=sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in cols
            if c != "created_at"
        ),
        newer=sql.SQL(_NEWER.format(table=table.name)),
    )


def _params(row: Row) -> Row:
    return {k: Jsonb(v) if isinstance(v, dict) or k in JSON_LISTS else v for k, v in row.items()}


def is_deleted(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


async def apply(
    conn: AsyncConnection[Any],
    table: Table,
    obj: Mapping[str, Any],
    audience: outbox.Audience = outbox.NOBODY_IN_PARTICULAR,
) -> int:
    """Make the table agree with one observed object (upsert, or delete if it is going away),
    with the events the change means in the same transaction; returns deliveries queued."""
    async with conn.transaction():
        return await _apply(conn, table, obj, audience)


async def remove(
    conn: AsyncConnection[Any],
    table: Table,
    uid: str,
    audience: outbox.Audience = outbox.NOBODY_IN_PARTICULAR,
) -> int:
    """Drop an object's row, with the events that means; returns deliveries queued."""
    async with conn.transaction():
        return await _remove(conn, table, uid, audience)


async def write(
    conn: AsyncConnection[Any],
    table: Table,
    events: Iterable[tuple[str, Mapping[str, Any]]],
    audience: outbox.Audience = outbox.NOBODY_IN_PARTICULAR,
) -> int:
    """Watch events of one table (``DELETED`` or any other type, and the object), in their
    order, in one transaction: each with the events it means, as ``apply`` and ``remove`` would
    record them one by one. Returns deliveries queued."""
    queued = 0
    async with conn.transaction():
        for kind, obj in events:
            if kind == "DELETED":
                queued += await _remove(conn, table, str(obj["metadata"]["uid"]), audience)
            else:
                queued += await _apply(conn, table, obj, audience)
    return queued


async def _apply(
    conn: AsyncConnection[Any], table: Table, obj: Mapping[str, Any], audience: outbox.Audience
) -> int:
    """``apply`` inside the caller's transaction."""
    if is_deleted(obj):
        return await _remove(conn, table, str(obj["metadata"]["uid"]), audience)
    row = table.row(obj)
    async with conn.cursor(row_factory=dict_row) as cur:
        # an object deleted and re-created under the same name before the DELETED event of
        # the old one arrived: the old row goes now
        await cur.execute(
            sql.SQL(
                "DELETE FROM {} WHERE namespace = %s AND id = %s AND uid <> %s RETURNING *"
            ).format(sql.Identifier(table.name)),
            (row["namespace"], row["id"], row["uid"]),
        )
        changes: list[outbox.Change] = [(gone, None) for gone in await cur.fetchall()]
        await cur.execute(
            sql.SQL("SELECT * FROM {} WHERE uid = %s FOR UPDATE").format(
                sql.Identifier(table.name)
            ),
            (row["uid"],),
        )
        old = await cur.fetchone()
        await cur.execute(_upsert_statement(table, row), _params(row))
        new = await cur.fetchone()
        if new is not None:  # None: an older version than the stored row, ignored
            changes.append((old, new))
        return await _record(conn, table, changes, audience)


async def _remove(
    conn: AsyncConnection[Any], table: Table, uid: str, audience: outbox.Audience
) -> int:
    """``remove`` inside the caller's transaction."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL("DELETE FROM {} WHERE uid = %s RETURNING *").format(sql.Identifier(table.name)),
            (uid,),
        )
        gone = await cur.fetchall()
        return await _record(conn, table, [(row, None) for row in gone], audience)


async def _record(
    conn: AsyncConnection[Any],
    table: Table,
    changes: list[outbox.Change],
    audience: outbox.Audience,
) -> int:
    """What row changes leave behind besides the rows: plugin events, and for sessions the
    usage history. Returns deliveries queued."""
    if table is SESSIONS:
        await usage.record(conn, changes)
    return await outbox.record(conn, table.name, changes, audience)


async def resync(
    conn: AsyncConnection[Any],
    table: Table,
    objects: Iterable[Mapping[str, Any]],
    namespace: str | None,
    audience: outbox.Audience = outbox.NOBODY_IN_PARTICULAR,
) -> int:
    """Full resync of one table from a list: upsert every object, drop rows of vanished ones.

    ``namespace`` limits the deletions to the namespace that was listed (None: all of them).
    Every row change is compared with the row it replaces, as a watch event's is, so changes
    made while no facade was writing are announced too. Returns how many rows were removed.
    """
    live = [obj for obj in objects if not is_deleted(obj)]
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            sql.SQL(
                "SELECT * FROM {} WHERE (%(ns)s::text IS NULL OR namespace = %(ns)s) FOR UPDATE"
            ).format(sql.Identifier(table.name)),
            {"ns": namespace},
        )
        before = {str(r["uid"]): r for r in await cur.fetchall()}
        uids = [str(obj["metadata"]["uid"]) for obj in live]
        await cur.execute(
            sql.SQL(
                "DELETE FROM {} WHERE NOT (uid = ANY(%(uids)s::uuid[])) "
                "AND (%(ns)s::text IS NULL OR namespace = %(ns)s) RETURNING *"
            ).format(sql.Identifier(table.name)),
            {"uids": uids, "ns": namespace},
        )
        gone = await cur.fetchall()
        changes: list[outbox.Change] = [(row, None) for row in gone]
        by_columns: dict[tuple[str, ...], list[Row]] = {}
        for obj in live:
            row = table.row(obj)
            by_columns.setdefault(tuple(row), []).append(_params(row))
        for columns, rows in by_columns.items():
            await cur.executemany(_upsert_statement(table, columns), rows, returning=True)
            while True:
                new = await cur.fetchone()
                if new is not None:
                    changes.append((before.get(str(new["uid"])), new))
                if not cur.nextset():
                    break
        await _record(conn, table, changes, audience)
        return len(gone)
