"""A session's connections: connect (which wakes a hibernated session), heartbeats, disconnect
and the list. Each is a Connection custom resource, which the operator makes owned by its Session
and which the idle timer reads (a connection without a heartbeat for ``STALE_AFTER`` is stale).
Connecting needs ``control`` access (the owner's, or a share's: decision 175)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streamspace import sharing
from streamspace.conditions import timestamp
from streamspace.config import SessionSettings
from streamspace.db.mirror import CONNECTIONS, connection_row
from streamspace.decisions import seen
from streamspace.naming import label_value
from streamspace.quotas import as_wanted, wants_running
from streamspace_facade import gate, paging, quotas
from streamspace_facade.errors import ApiError, conflict, invalid, not_found
from streamspace_facade.principal import Principal
from streamspace_facade.responses import json_response
from streamspace_facade.session_access import may, object_namespace, session_for
from streamspace_facade.state import (
    Services,
    audit,
    iso,
    principal,
    services,
)
from streamspace_facade.storage.sessions import ConnectionRow


def connection_view(row: ConnectionRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "connectionId": row.id,
        "sessionId": row.session_id,
        "user": row.user_id,
        "clientIP": row.client_ip,
        "userAgent": row.user_agent,
        "state": row.state,
        "connectedAt": iso(row.connected_at),
        "lastHeartbeat": iso(row.last_heartbeat),
        "createdAt": iso(row.created_at),
    }


def _connection_name(session: str) -> str:
    return f"{session[:240].rstrip('.-')}-{secrets.token_hex(4)}"


async def connect(request: web.Request) -> web.Response:
    svc, who = services(request), principal(request)
    name = request.match_info["id"]
    session = await session_for(request, name, sharing.CONTROL)
    spec, status = session.get("spec") or {}, session.get("status") or {}
    if spec.get("state") == "terminated":
        raise conflict(f"session {name!r} is terminated; create a new one")
    conn_spec: dict[str, Any] = {"session": name, "user": who.user}
    ip = request.remote
    if ip and len(ip) <= 45 and ":" not in ip.strip("0123456789abcdefABCDEF:."):
        conn_spec["clientIP"] = ip
    agent = request.headers.get("User-Agent")
    if agent:
        conn_spec["userAgent"] = agent[:1024]
    if wants_running(session):
        obj = await _create_connection(svc, session, conn_spec)
    else:  # the connection wakes it (the operator does): only within the running quota
        waking = as_wanted(session, "running")
        async with quotas.admitting(request, object_namespace(session), waking):
            obj = await _create_connection(svc, session, conn_spec)
    await svc.mirror.observed(CONNECTIONS, obj)
    connection_id = obj["metadata"]["name"]
    audit(request, "connect", "session", name, {"connectionId": connection_id})
    return json_response(
        {
            "connectionId": connection_id,
            "sessionUrl": status.get("url"),
            "state": spec.get("state", "running"),
            "phase": status.get("phase") or "Pending",
            "ready": status.get("phase") == "Running" and spec.get("state") == "running",
            "heartbeatInterval": heartbeat_interval(svc.settings.sessions),
            **gate.credential(request, session, who.user, status.get("url")),
        }
    )


async def _create_connection(
    svc: Services, session: dict[str, Any], conn_spec: dict[str, Any]
) -> dict[str, Any]:
    name = session["metadata"]["name"]
    obj: dict[str, Any] = await svc.kube.create(
        "Connection",
        object_namespace(session),  # beside its session: the session owns it
        {
            "metadata": {
                "name": _connection_name(name),
                "labels": {"stream.space/session": label_value(name)},
                # what this connect saw: the operator wakes the session for it only if no
                # decision of the user came after (decisions.connect_wakes)
                "annotations": seen(session),
            },
            "spec": conn_spec,
        },
    )
    return obj


def heartbeat_interval(sessions: SessionSettings) -> int:
    """Seconds between a client's heartbeats: a third of ``STALE_AFTER``, so that one lost or
    late heartbeat never makes a connection in use stale."""
    return max(1, int(sessions.stale_after.total_seconds() // 3))


async def _own_connection(
    request: web.Request, session: str
) -> tuple[Services, str, dict[str, Any]]:
    svc = services(request)
    connection_id = request.query.get("connectionId")
    if not connection_id:
        raise invalid({"query.connectionId": "required"})
    owner = await session_for(request, session, sharing.CONTROL)
    try:
        obj = await svc.kube.get("Connection", object_namespace(owner), connection_id)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("connection", connection_id) from None
        raise
    conn_spec = obj.get("spec") or {}
    if conn_spec.get("session") != session or not _sees_connection(
        principal(request), owner, conn_spec
    ):
        raise not_found("connection", connection_id)
    return svc, connection_id, obj


async def disconnect(request: web.Request) -> web.Response:
    session = request.match_info["id"]
    svc, connection_id, obj = await _own_connection(request, session)
    await svc.kube.delete("Connection", object_namespace(obj), connection_id)
    await svc.mirror.forget(CONNECTIONS, obj["metadata"]["uid"])
    audit(request, "disconnect", "session", session, {"connectionId": connection_id})
    return json_response({"connectionId": connection_id, "disconnected": True})


async def heartbeat(request: web.Request) -> web.Response:
    session = request.match_info["id"]
    svc, connection_id, current = await _own_connection(request, session)
    now = timestamp(datetime.now(UTC))
    obj = await svc.kube.patch(
        "Connection",
        object_namespace(current),
        connection_id,
        {"status": {"lastHeartbeat": now}},
        status=True,
    )
    await svc.mirror.observed(CONNECTIONS, obj)
    audit(request, "heartbeat", "connection", connection_id)
    return json_response(
        {"connectionId": connection_id, "lastHeartbeat": now, "state": connection_row(obj)["state"]}
    )


async def list_connections(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["id"]
    win = paging.window(request, "connections", {"session": name})
    session = await session_for(request, name, sharing.VIEW)
    who = principal(request)
    rows = [
        row
        for row in await svc.db().sessions.connections(object_namespace(session), name)
        if _sees_connection(who, session, {"user": row.user_id})
    ]
    return json_response(
        paging.in_memory(
            request, win, "connections", rows, key=_connection_key, view=connection_view
        )
    )


def _sees_connection(
    who: Principal, session: Mapping[str, Any], conn_spec: Mapping[str, Any]
) -> bool:
    """The owner, operators and admins see every connection of a session; a shared user only
    their own (another user's client address is not theirs to see or end)."""
    return may(who, session.get("spec") or {}, sharing.OWNER) or conn_spec.get("user") == who.user


def _connection_key(row: ConnectionRow) -> paging.Key:
    return (row.created_at.timestamp(), row.id)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/sessions/{id}/connect", connect)
    router.add_delete("/api/v1/sessions/{id}/disconnect", disconnect)
    router.add_post("/api/v1/sessions/{id}/disconnect", disconnect)
    router.add_post("/api/v1/sessions/{id}/heartbeat", heartbeat)
    router.add_get("/api/v1/sessions/{id}/connections", list_connections)
