"""A plugin catalog entry for tests: a suspended plugin repository made over the API (never
synced, so no Git server) and one ``catalog_plugins`` row of it, written as the sync would."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.types.json import Jsonb

from facade_testing import Client

if TYPE_CHECKING:
    from stack_testing import Stack

MANIFEST = {
    "name": "audit-hook",
    "version": "1.2.0",
    "displayName": "Audit hook",
    "type": "webhook",
    "configSchema": {
        "type": "object",
        "required": ["url"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "format": "uri", "pattern": "^https://"},
            "channel": {"type": "string", "minLength": 2},
            "token": {"type": "string", "writeOnly": True, "minLength": 8},
        },
    },
    "permissions": [
        {"name": "sessions.read", "risk": "high", "description": "reads sessions"},
        {"name": "events.receive", "risk": "low", "description": "gets events"},
    ],
    "events": ["session.*"],
}


def add_catalog_plugin(stack: Stack, manifest: dict[str, Any] = MANIFEST) -> int:
    """A plugin repository (suspended: never synced) and one catalog entry of it."""
    operator = stack.client("olga", "operator")
    return catalog_plugin(operator, stack.database_url, stack.namespace, manifest)


def catalog_plugin(
    operator: Client,
    database_url: str,
    namespace: str,
    manifest: dict[str, Any] = MANIFEST,
    *,
    repository: str = "plugins",
) -> int:
    """``add_catalog_plugin`` through any facade: ``operator`` calls it as an operator."""
    made = operator.post(
        "/api/v1/plugins/repositories",
        {"name": repository, "url": "https://git.invalid/plugins.git", "suspend": True},
    )
    assert made.status == 201, made
    assert made.body["type"] == "plugin"
    with psycopg.connect(database_url, autocommit=True) as conn:
        uid = conn.execute(
            "SELECT uid FROM repositories WHERE namespace = %s AND id = %s",
            (namespace, repository),
        ).fetchone()
        assert uid is not None
        row = conn.execute(
            "INSERT INTO catalog_plugins (repository_uid, name, version, display_name, "
            "category, plugin_type, manifest, tags) VALUES (%s, %s, %s, %s, 'audit', %s, %s, "
            "'{ops}') RETURNING id",
            (
                uid[0],
                manifest["name"],
                manifest["version"],
                manifest["displayName"],
                manifest["type"],
                Jsonb(manifest),
            ),
        ).fetchone()
    assert row is not None
    return int(row[0])
