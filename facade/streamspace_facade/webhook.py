"""``POST /webhooks/repository/sync``: Git pushes request a sync of the matching repositories.

The signature (and a generic delivery's timestamp) is checked in constant time on the raw body
before anything is parsed; any mismatch is a 401 that says no more. Every delivery carries an
id and is acted on once (the id is recorded in PostgreSQL, so replays at any replica are
acknowledged without a sync). Matching repositories get a sync request no more often than
``SYNC_REQUEST_INTERVAL`` each; requests in between are folded into a later one
(``streamspace.sync_requests``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from streamspace import sync_requests, webhooks
from streamspace_facade.errors import ApiError, bad_request, unauthorized
from streamspace_facade.metrics import WEBHOOK_DELIVERIES
from streamspace_facade.responses import json_response
from streamspace_facade.state import audit, services

log = logging.getLogger(__name__)

MAX_BODY = 1024**2


# refusals by status, for streamspace_webhook_deliveries_total{result}
REFUSED = {400: "invalid", 401: "unauthorized", 413: "too-large"}


async def repository_sync(request: web.Request) -> web.Response:
    delivery = webhooks.identify(request.headers)
    result = "error"
    try:
        result, response = await _deliver(request, delivery)
    except (ApiError, web.HTTPException) as exc:  # HTTPException: a chunked body over the limit
        result = REFUSED.get(exc.status, "error")
        raise
    finally:
        WEBHOOK_DELIVERIES.labels(delivery.provider, result).inc()
    return response


async def _deliver(request: web.Request, delivery: webhooks.Delivery) -> tuple[str, web.Response]:
    """The delivery's result (a metric label) and the answer."""
    svc = services(request)
    auth = svc.settings.auth
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise ApiError(413, "TOO_LARGE", "webhook body larger than 1 MiB")
    body = await request.read()
    now = datetime.now(UTC)
    if not webhooks.verify(
        delivery,
        request.headers,
        body,
        auth.webhook_secret,
        allow_unsigned=auth.webhook_allow_unsigned,
        now=now,
        tolerance=auth.webhook_tolerance,
    ):
        log.warning("webhook from %s refused: bad, stale or missing signature", request.remote)
        if webhooks.legacy_signature(request.headers):
            raise unauthorized(
                "X-Webhook-Signature is not accepted: sign with the webhook-id, "
                "webhook-timestamp and webhook-signature headers (Standard Webhooks)"
            )
        raise unauthorized("invalid, stale or missing webhook signature")
    if (missing := webhooks.required_delivery_id(delivery)) is not None:
        raise bad_request(f"the {missing} header is required")
    try:
        push = webhooks.parse_push(delivery, body)
    except webhooks.WebhookError as exc:
        raise bad_request(str(exc)) from None
    if push is None:
        return "ignored", json_response({"status": "ignored", "reason": "not a branch push"})
    if delivery.delivery_id and not await svc.db().webhooks.first(
        delivery.provider, delivery.delivery_id
    ):
        answer = {"status": "duplicate", "repositories": [], "total": 0}
        return "duplicate", json_response(answer)
    items, _ = await svc.kube.list("TemplateRepository", svc.namespace)
    matched = sorted(
        (
            obj
            for obj in items
            if not (obj.get("spec") or {}).get("suspend")
            and webhooks.matches(
                push, str(obj["spec"].get("url", "")), str(obj["spec"].get("branch", "main"))
            )
        ),
        key=lambda obj: str(obj["metadata"]["name"]),
    )
    names = [str(obj["metadata"]["name"]) for obj in matched]
    deferred = await _request_syncs(request, matched, now)
    audit(
        request,
        "webhook",
        "repository",
        ",".join(names)[:500] or None,
        {"provider": delivery.provider, "branch": push.branch, "repositories": names},
    )
    return "accepted" if names else "no-match", json_response(
        {"status": "accepted", "repositories": names, "total": len(names), "deferred": deferred},
        status=202,
    )


async def _request_syncs(
    request: web.Request, repositories: list[dict[str, Any]], now: datetime
) -> list[str]:
    """Ask for a sync of each repository, rate-limited per repository; the names whose sync
    runs later (scheduled now, or already scheduled) than this delivery."""
    svc = services(request)
    deferred = []
    for obj in repositories:
        name = str(obj["metadata"]["name"])
        previous = (obj["metadata"].get("annotations") or {}).get(sync_requests.SYNC_REQUESTED)
        when = sync_requests.next_request(previous, now, svc.settings.sync.request_interval)
        if when is None or when > now:
            deferred.append(name)
        if when is not None:
            value = sync_requests.stamp(when)
            patch = {"metadata": {"annotations": {sync_requests.SYNC_REQUESTED: value}}}
            await svc.kube.patch("TemplateRepository", svc.namespace, name, patch)
    return deferred


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/webhooks/repository/sync", repository_sync)
