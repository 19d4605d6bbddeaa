"""API key management for admins (the same keys as ``streamspace token``,
managed through the storage layer's ``ApiKeyStore`` on the facade's pool), and the audit log
(admins; newest first, filtered by user and action, keyset-paged by row id)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from streamspace.auth import apikeys
from streamspace.auth.apikeys import ApiKey
from streamspace.conditions import timestamp
from streamspace_facade import paging
from streamspace_facade.errors import invalid, not_found
from streamspace_facade.responses import json_response
from streamspace_facade.state import Fields, audit, json_body, require, services
from streamspace_facade.storage.audit import AuditRow


def _key_view(key: apikeys.ApiKey) -> dict[str, Any]:
    data = asdict(key)
    return {
        "id": data["id"],
        "user": data["user_id"],
        "name": data["name"],
        "prefix": data["prefix"],
        "role": data["role"],
        "createdAt": timestamp(key.created_at),
        "lastUsedAt": key.last_used_at and timestamp(key.last_used_at),
        "revokedAt": key.revoked_at and timestamp(key.revoked_at),
    }


async def list_keys(request: web.Request) -> web.Response:
    require(request, "admin")
    user = request.query.get("user") or None
    win = paging.window(request, "apikeys", {"user": user})
    keys = await services(request).db().apikeys.list(user)
    return json_response(
        paging.in_memory(request, win, "apiKeys", keys, key=_key_key, view=_key_view)
    )


def _key_key(key: ApiKey) -> paging.Key:
    return (key.id,)


async def create_key(request: web.Request) -> web.Response:
    require(request, "admin")
    fields = Fields(await json_body(request), {"user", "role", "name"})
    user = fields.get("user", str, required=True)
    role = fields.get(
        "role",
        str,
        required=True,
        check=lambda r: (
            None if r in apikeys.ROLES else f"must be one of {', '.join(apikeys.ROLES)}"
        ),
    )
    name = fields.get("name", str) or ""
    fields.done()
    try:
        key = await services(request).db().apikeys.create(user, role, name)
    except ValueError as exc:
        raise invalid({"user": str(exc)}) from None
    audit(request, "create", "api_key", user, {"role": role, "name": name})
    return json_response(
        {"key": key, "user": user, "role": role, "name": name, "prefix": key[:9]}, status=201
    )


async def revoke_key(request: web.Request) -> web.Response:
    require(request, "admin")
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise not_found("API key", raw)
    svc = services(request)
    revoked = await svc.db().apikeys.revoke(int(raw))
    svc.auth.keys.forget(int(raw))  # refused at once here; other replicas: API_KEY_CACHE_TTL
    if not revoked:
        raise not_found("API key", raw)
    audit(request, "revoke", "api_key", raw)
    return web.Response(status=204)


def _audit_view(row: AuditRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "user": row.user_id,
        "action": row.action,
        "resourceType": row.resource_type,
        "resourceId": row.resource_id,
        "changes": row.changes or {},
        "timestamp": timestamp(row.timestamp),
        "ipAddress": row.ip_address,
    }


async def list_audit(request: web.Request) -> web.Response:
    require(request, "admin")
    user = request.query.get("user") or None
    action = request.query.get("action") or None
    win = paging.window(request, "audit", {"user": user, "action": action}, default=50, maximum=500)
    after = None
    if win.after is not None:
        if len(win.after) != 1 or not isinstance(win.after[0], int):
            raise invalid({paging.CONTINUE: "not a continue token of this list"})
        after = win.after[0]
    rows, total, more = await services(request).db().audit.page(user, action, win.limit, after)
    last = (rows[-1].id,) if more and rows else None
    return json_response(
        paging.envelope(
            request, win, "entries", [_audit_view(r) for r in rows], total=total, last=last
        )
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/admin/apikeys", list_keys)
    router.add_post("/api/v1/admin/apikeys", create_key)
    router.add_delete("/api/v1/admin/apikeys/{id}", revoke_key)
    router.add_get("/api/v1/admin/audit", list_audit)
