"""What the plugin routes answer: catalog entries and installed plugins in the API's camelCase,
and the lookups every plugin route shares (the store, the Plugin object, its catalog entry).

An installed plugin never shows a secret: ``config`` holds the non-secret properties only (the
Plugin's ``spec.config``) and ``secretConfig`` lists which secret properties have a value, by
path, never the values (decision 122).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from streamspace.db.mirror import PLUGINS, is_deleted
from streamspace_facade.errors import ApiError, conflict, not_found
from streamspace_facade.state import iso, services
from streamspace_facade.storage.plugins import CatalogPlugin, InstalledPlugin, PluginStore

PLUGIN_TYPES = ("extension", "webhook", "api", "ui", "theme")
RISKS = ("low", "medium", "high")


def store(request: web.Request) -> PluginStore:
    return services(request).db().plugins


def manifest_permissions(manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    return [
        {
            "name": str(p.get("name", "")),
            "risk": str(p.get("risk", "")),
            "description": str(p.get("description") or ""),
        }
        for p in manifest.get("permissions") or []
        if isinstance(p, Mapping)
    ]


def high_risk(manifest: Mapping[str, Any]) -> list[str]:
    """The names of the permissions the manifest asks for at risk ``high``."""
    return sorted({p["name"] for p in manifest_permissions(manifest) if p["risk"] == "high"})


def catalog_view(row: CatalogPlugin, *, detail: bool = False) -> dict[str, Any]:
    manifest = row.manifest or {}
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "displayName": row.display_name,
        "description": row.description,
        "category": row.category,
        "type": row.plugin_type,
        "icon": row.icon_url,
        "tags": list(row.tags or []),
        "permissions": manifest_permissions(manifest),
        "events": [str(e) for e in manifest.get("events") or []],
        "runnable": bool(manifest.get("image")),
        "installCount": row.install_count,
        "avgRating": float(row.avg_rating),
        "ratingCount": row.rating_count,
        "repository": {"id": row.repository_id, "url": row.repository_url},
        "updatedAt": iso(row.updated_at),
    }
    if detail:
        schema = manifest.get("configSchema")
        view["configSchema"] = schema if isinstance(schema, dict) else None
    return view


def installed_view(row: InstalledPlugin | Mapping[str, Any]) -> dict[str, Any]:
    """An installed plugin, from a mirror row (or a row made from a fresh Plugin)."""
    r = dataclasses.asdict(row) if isinstance(row, InstalledPlugin) else row
    return {
        "id": r["id"],
        "name": r["id"],
        "namespace": r["namespace"],
        "catalogId": r.get("catalog_id"),
        "repository": r["repository"],
        "pluginName": r["plugin_name"],
        "version": r["version"],
        "type": r["plugin_type"],
        "enabled": r["enabled"],
        "config": r["config"] or {},
        "secretConfig": list(r["secret_keys"] or []),
        "phase": r["phase"] or "Pending",
        "message": r["message"],
        "approved": r["approved"],
        "approvedPermissions": list(r["approved_permissions"] or []),
        "permissions": list(r["permissions"] or []),
        "events": list(r["events"] or []),
        "url": r["url"],
        "secretName": r["secret_name"],
        "installedBy": r["installed_by"],
        "createdAt": iso(r["created_at"]),
    }


OPERATOR_ONLY = frozenset({"config", "secretConfig", "url", "secretName", "message", "installedBy"})
"""What users do not see of an installed plugin: its configuration and where it delivers (a
webhook URL is often a credential itself, e.g. a chat service's incoming-webhook URL), and the
status message, which may quote configuration values. Operators and admins see everything."""


def public_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """An installed plugin as users (and other plugins' events) see it."""
    return {k: v for k, v in view.items() if k not in OPERATOR_ONLY}


def fresh_view(obj: Mapping[str, Any], entry: CatalogPlugin | None) -> dict[str, Any]:
    """The view of a Plugin just written (what the mirror row will say)."""
    return installed_view({**PLUGINS.row(obj), "catalog_id": entry.id if entry else None})


async def plugin(request: web.Request) -> dict[str, Any]:
    """The Plugin named by the path, from the API server (404 when missing or going)."""
    svc = services(request)
    name = request.match_info["id"]
    try:
        obj: dict[str, Any] = await svc.kube.get("Plugin", svc.namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("plugin", name) from None
        raise
    if is_deleted(obj):
        raise not_found("plugin", name)
    return obj


async def catalog_entry_of(request: web.Request, obj: Mapping[str, Any]) -> CatalogPlugin:
    """The catalog entry a Plugin names; 409 when the catalog has none (yet)."""
    spec = obj.get("spec") or {}
    ref = spec.get("catalogPlugin") or {}
    meta = obj["metadata"]
    entry = await store(request).catalog_by_name(
        str(meta["namespace"]), str(ref.get("repository", "")), str(ref.get("name", ""))
    )
    if entry is None:
        raise conflict(
            f"plugin {meta['name']!r}: its catalog entry {ref.get('name')!r} of repository "
            f"{ref.get('repository')!r} is not in the catalog (is the repository synced?)"
        )
    return entry
