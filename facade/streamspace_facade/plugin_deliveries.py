"""Routes of a plugin's delivery log: ``GET /api/v1/plugins/{id}/deliveries`` (operators and
admins: each row's subject names an object, e.g. another user's session, which a user may not
even learn exists) and ``POST .../{deliveryId}/redeliver``
(admin: a dead delivery gets a fresh retry budget and goes again, in its subject's order).

``{id}`` is the Plugin's name in the facade's namespace. The log shows what each delivery did
(status, attempts, last error and HTTP status, latency), never the event's data or a secret.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from aiohttp import web

from streamspace_facade import paging
from streamspace_facade.errors import ApiError, conflict, invalid, not_found
from streamspace_facade.responses import json_response
from streamspace_facade.state import audit, iso, require, services
from streamspace_facade.storage.deliveries import Delivery, DeliveryStore

STATUSES = ("pending", "delivered", "dead")


def delivery_view(row: Delivery) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "eventId": str(row.event_id),
        "type": row.type,
        "subject": row.subject,
        "status": row.status,
        "attempts": row.attempts,
        "nextAttemptAt": iso(row.next_attempt_at) if row.status == "pending" else None,
        "lastError": row.last_error,
        "lastStatus": row.last_status,
        "latencyMs": None if row.latency_ms is None else round(row.latency_ms, 1),
        "deliveredAt": iso(row.delivered_at),
        "createdAt": iso(row.created_at),
    }


def _store(request: web.Request) -> DeliveryStore:
    return services(request).db().deliveries


def _delivery_id(request: web.Request) -> uuid.UUID:
    try:
        return uuid.UUID(request.match_info["deliveryId"])
    except ValueError:
        raise ApiError(404, "NOT_FOUND", "no such delivery") from None


async def list_deliveries(request: web.Request) -> web.Response:
    require(request, "operator")
    svc, plugin = services(request), request.match_info["id"]
    status = request.query.get("status") or None
    if status is not None and status not in STATUSES:
        raise invalid({"query.status": "must be one of " + ", ".join(STATUSES)})
    win = paging.window(
        request,
        "deliveries",
        {"plugin": plugin, "status": status},
        default=50,
        maximum=200,
        numbered=True,
    )
    if win.page is None and win.after is None:
        win = replace(win, page=1)  # the seed's clients read "page" in every answer
    store = _store(request)
    if not await store.known(svc.namespace, plugin):
        raise not_found("plugin", plugin)
    after = None if win.after is None else int(win.after[0])
    rows, total, more = await store.log(
        svc.namespace, plugin, status, win.limit, offset=win.offset, after=after
    )
    last = (rows[-1].seq,) if more and rows else None
    return json_response(
        paging.envelope(
            request,
            win,
            "deliveries",
            [delivery_view(r) for r in rows],
            total=total,
            last=last,
        )
    )


async def redeliver(request: web.Request) -> web.Response:
    require(request, "admin")
    svc, plugin = services(request), request.match_info["id"]
    delivery_id = _delivery_id(request)
    store = _store(request)
    if not await store.redeliver(svc.namespace, plugin, delivery_id):
        row = await store.get(svc.namespace, plugin, delivery_id)
        if row is None:
            raise ApiError(404, "NOT_FOUND", "no such delivery")
        raise conflict(f"the delivery is {row.status}; only a dead one is redelivered")
    row = await store.get(svc.namespace, plugin, delivery_id)
    if row is None:  # pruned in between
        raise ApiError(404, "NOT_FOUND", "no such delivery")
    audit(request, "redeliver", "plugin_delivery", str(delivery_id), {"plugin": plugin})
    if svc.mirror is not None:
        svc.mirror.queued.set()  # on the writer replica it goes at once
    return json_response(delivery_view(row), status=202)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/plugins/{id}/deliveries", list_deliveries)
    router.add_post("/api/v1/plugins/{id}/deliveries/{deliveryId}/redeliver", redeliver)
