"""WebSocket streams: ``/api/v1/ws/sessions``, ``/api/v1/ws/cluster`` and pod logs.

The upgrade request is authenticated like any other request (the ``authenticate`` middleware);
browsers, which cannot set headers on a WebSocket, may put the token in the
``Sec-WebSocket-Protocol`` header as ``bearer.<token>`` next to ``streamspace.v1`` (the protocol
the server selects, so the token is never echoed), or in the ``token`` query parameter. A
browser's ``Origin`` must be one of ``CORS_ALLOWED_ORIGINS`` or the facade's own host.

Every client has a bounded queue of outgoing messages and a task that writes them
(``streamclient``): a client too slow for its queue is dropped (close code 1013), so one
stalled reader never delays the others; a ``?format=delta`` sessions client gets a fresh
snapshot instead. The server pings every ``WS_HEARTBEAT`` and closes clients that stop
answering; on shutdown every client gets close code 1001.

Streams are bounded per user and in total (429 before the upgrade), and their credential is
checked again every ``WS_REAUTH_INTERVAL`` (close code 4401 once it fails): see
``streamguard``. Pod logs are followed by ``podlogs``, one shared follow per container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSCloseCode, web

from streamspace.db.mirror import is_deleted
from streamspace.naming import is_dns_label, is_object_name
from streamspace_facade import metrics, signin
from streamspace_facade.errors import ApiError, forbidden, invalid, not_found
from streamspace_facade.kube import Kube, connect
from streamspace_facade.live import Informer, SessionFeed, message
from streamspace_facade.podlogs import BACKLOG, Follows, may_follow
from streamspace_facade.state import Services, principal, query_int, require, services
from streamspace_facade.storage import StorageError
from streamspace_facade.streamclient import CLOSE_TIMEOUT, Client
from streamspace_facade.streamguard import StreamSlots, recheck

log = logging.getLogger(__name__)

PREFIX = "/api/v1/ws/"
PROTOCOL = "streamspace.v1"
BEARER_PROTOCOL = "bearer."
CLUSTER_INTERVAL = 5.0
SYNC_WAIT = 10.0
"""Seconds a new subscriber waits for the first list of Sessions before a 503."""
MAX_CLIENT_MESSAGE = 4096
"""Clients say little beyond pongs, close frames and ``resync``; anything larger ends the stream."""
FORMATS = ("full", "delta")
"""``/api/v1/ws/sessions?format=``: ``sessions_update`` snapshots (the seed's), or deltas."""


def authorization(request: web.Request) -> str | None:
    """The request's credential: its Authorization header, else one of a stream's places, else
    a signed-in browser's cookie (``signin``; 403 for a forged cross-site write)."""
    return (
        request.headers.get("Authorization")
        or credential(request)
        or signin.cookie_credential(request)
    )


def credential(request: web.Request) -> str | None:
    """``Bearer <token>`` for an upgrade that carries its token where browsers can put it."""
    if not request.path.startswith(PREFIX):
        return None
    for offered in _protocols(request):
        if offered.startswith(BEARER_PROTOCOL) and len(offered) > len(BEARER_PROTOCOL):
            return f"Bearer {offered.removeprefix(BEARER_PROTOCOL)}"
    token = request.query.get("token")
    return f"Bearer {token}" if token else None


def _protocols(request: web.Request) -> list[str]:
    return [
        p.strip()
        for header in request.headers.getall("Sec-WebSocket-Protocol", ())
        for p in header.split(",")
        if p.strip()
    ]


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Non-browser clients send no Origin; browsers must come from an allowed or our own origin."""
    origin = request.headers.get("Origin")
    if origin is None or origin in allowed:
        return True
    try:
        return urlsplit(origin).netloc.lower() == request.host.lower()
    except ValueError:
        return False


@dataclass
class Live:
    """The streams of one facade process: the Session watch, its feed and every client."""

    feed: SessionFeed
    informer: Informer
    slots: StreamSlots
    follows: Follows
    clients: set[Client] = field(default_factory=set)
    cluster_clients: set[Client] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running(svc: Services) -> AsyncIterator[Live]:
    http = svc.settings.http
    feed = SessionFeed(svc.settings.sessions.hibernate_warning)
    informer = Informer(svc.kube, "Session", svc.scope, feed.on_change)
    # pod logs follow on a client of their own: two connections per follow at most
    log_api = await connect(
        svc.settings.kubernetes.kubeconfig, connections=2 * http.ws_max_log_follows
    )
    live = Live(
        feed=feed,
        informer=informer,
        slots=StreamSlots(http.ws_max_streams_per_user, http.ws_max_streams),
        follows=Follows(Kube(log_api), http.ws_max_log_follows),
    )
    live.tasks = [
        asyncio.create_task(informer.run(), name="sessions-informer"),
        asyncio.create_task(feed.snapshots(), name="sessions-snapshots"),
        asyncio.create_task(_cluster_loop(svc, live), name="cluster-metrics"),
    ]
    try:
        yield live
    finally:
        for task in live.tasks:
            task.cancel()
        await asyncio.gather(*live.tasks, return_exceptions=True)
        feed.close()
        await live.follows.close()
        await log_api.close()


async def shutdown(live: Live) -> None:
    """Tell every client the server is going away (1001), before the server stops."""
    clients = list(live.clients)
    for client in clients:
        client.drop(WSCloseCode.GOING_AWAY, "server shutting down", reason="shutdown")
    await asyncio.gather(*(c.closing() for c in clients), return_exceptions=True)


def _live(request: web.Request) -> Live:
    live = services(request).live
    if not isinstance(live, Live):
        raise ApiError(503, "UNAVAILABLE", "streams are not running")
    return live


async def synced(request: web.Request) -> Live:
    """The streams, once the Session copy is complete (a first snapshot is never partial)."""
    live = _live(request)
    try:
        async with asyncio.timeout(SYNC_WAIT):
            await live.informer.synced.wait()
    except TimeoutError:
        raise ApiError(503, "UNAVAILABLE", "sessions are not loaded yet; retry shortly") from None
    return live


def _slot(request: web.Request, stream: str) -> contextlib.AbstractContextManager[None]:
    """One of the caller's stream slots, held for the ``with`` block; 429 when none is left."""
    return _live(request).slots.slot(principal(request).user, stream)


async def _upgrade(request: web.Request, stream: str) -> tuple[web.WebSocketResponse, Client]:
    svc = services(request)
    settings = svc.settings.http
    if not origin_allowed(request, settings.cors_allowed_origins):
        metrics.WS_DROPPED.labels(stream, "origin").inc()
        raise forbidden("origin not allowed")
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,),
        # permessage-deflate keeps a compressor per client: ~150 KiB each, and growing
        # (bench ws); uncompressed it is ~28 KiB. Browsers simply do without.
        compress=False,
        heartbeat=settings.ws_heartbeat.total_seconds(),
        max_msg_size=MAX_CLIENT_MESSAGE,
        timeout=CLOSE_TIMEOUT,
    )
    if not ws.can_prepare(request).ok:
        raise ApiError(426, "UPGRADE_REQUIRED", "this is a WebSocket endpoint")
    await ws.prepare(request)
    return ws, Client(request, ws, stream, settings.ws_queue)


async def _serve(
    request: web.Request,
    client: Client,
    *,
    join: Callable[[Live, Client], None],
    leave: Callable[[Live, Client], None],
    work: Coroutine[Any, Any, None] | None = None,
) -> None:
    live, svc = _live(request), services(request)
    live.clients.add(client)
    gauge = metrics.WS_CLIENTS.labels(client.stream)
    gauge.inc()
    tasks = [asyncio.create_task(work)] if work is not None else []
    header = authorization(request)
    if header is not None:
        tasks.append(
            asyncio.create_task(
                recheck(
                    svc.auth.authenticate,
                    header,
                    client.principal,
                    svc.settings.http.ws_reauth_interval.total_seconds(),
                    lambda code, text: client.drop(code, text, reason="credentials"),
                )
            )
        )
    try:
        join(live, client)
        await client.run()
    finally:
        leave(live, client)
        live.clients.discard(client)
        gauge.dec()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def sessions_stream(request: web.Request) -> web.StreamResponse:
    """Own sessions (all of them for operators and admins): at once, on change, every 3 s;
    with ``?format=delta`` a snapshot, then only what changed."""
    form = request.query.get("format", "full")
    if form not in FORMATS:
        raise invalid({"query.format": f"must be one of {', '.join(FORMATS)}"})
    await synced(request)
    with _slot(request, "sessions"):
        ws, client = await _upgrade(request, "sessions")

        def join(live: Live, c: Client) -> None:
            if form == "delta":
                c.resync = lambda reason: live.feed.resync_messages(c, reason)
                live.feed.subscribe_deltas(c)
            else:
                live.feed.subscribe(c)

        await _serve(request, client, join=join, leave=lambda live, c: live.feed.unsubscribe(c))
    return ws


# -- cluster ---------------------------------------------------------------------------------


async def cluster_metrics(svc: Services, live: Live) -> dict[str, Any]:
    """The seed's ``metrics_update`` figures for the facade's scope."""
    phases: dict[str, int] = {}
    for view in live.feed.views.values():
        phases[view["phase"]] = phases.get(view["phase"], 0) + 1
    counts = {}
    for kind in ("Connection", "TemplateRepository", "Template"):
        items, _ = await svc.kube.list(kind, svc.scope)
        counts[kind] = sum(1 for o in items if not is_deleted(o))
    figures: dict[str, Any] = {
        "sessions": {
            "running": phases.get("Running", 0),
            "hibernated": phases.get("Hibernated", 0),
            "pending": phases.get("Pending", 0),
            "terminated": phases.get("Terminated", 0),
            "total": len(live.feed.views),
        },
        "activeConnections": counts["Connection"],
        "repositories": counts["TemplateRepository"],
        "templates": counts["Template"],
    }
    figures["catalogTemplates"] = await _catalog_count(svc)
    return figures


async def _catalog_count(svc: Services) -> int | None:
    if svc.storage is None:
        return None
    try:
        return await svc.storage.catalog.size(wait=2)
    except StorageError:
        return None


async def _cluster_payload(svc: Services, live: Live) -> bytes:
    return message("metrics_update", metrics=await cluster_metrics(svc, live))


async def _cluster_loop(svc: Services, live: Live) -> None:
    while True:
        await asyncio.sleep(CLUSTER_INTERVAL)
        if not live.cluster_clients:
            continue
        try:
            payload = await _cluster_payload(svc, live)
        except ApiError as exc:
            log.warning("cluster metrics unavailable: %s", exc.message)
            continue
        for client in list(live.cluster_clients):
            client.send(payload)
        metrics.WS_MESSAGES.labels("cluster", "metrics_update").inc(len(live.cluster_clients))


async def cluster_stream(request: web.Request) -> web.StreamResponse:
    """``metrics_update`` every 5 s, for operators and admins."""
    require(request, "operator")
    svc, live = services(request), await synced(request)
    with _slot(request, "cluster"):
        first = await _cluster_payload(svc, live)  # before the upgrade: failures are HTTP errors
        ws, client = await _upgrade(request, "cluster")
        client.send(first)
        metrics.WS_MESSAGES.labels("cluster", "metrics_update").inc()
        await _serve(
            request,
            client,
            join=lambda live, c: live.cluster_clients.add(c),
            leave=lambda live, c: live.cluster_clients.discard(c),
        )
    return ws


# -- pod logs --------------------------------------------------------------------------------


async def requested_pod(request: web.Request) -> dict[str, Any]:
    """The pod ``{namespace}/{pod}`` of a pod stream's path, in the facade's scope; else 404."""
    svc = services(request)
    namespace, name = request.match_info["namespace"], request.match_info["pod"]
    if not is_dns_label(namespace) or not is_object_name(name):
        raise not_found("pod", name)
    if svc.scope is not None and namespace != svc.scope:
        raise not_found("pod", name)
    try:
        pod: dict[str, Any] = await svc.kube.get_pod(namespace, name)
    except ApiError as exc:
        raise not_found("pod", name) if exc.status == 404 else exc from None
    return pod


def requested_container(request: web.Request, pod: Mapping[str, Any]) -> str:
    """``?container=`` (default the pod's first); 422 for one the pod does not have."""
    containers = [str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.query.get("container") or (containers[0] if containers else "")
    if container not in containers:
        raise invalid({"query.container": f"must be one of {containers}"})
    return container


async def logs_stream(request: web.Request) -> web.StreamResponse:
    """Follow a session container's log, a line per text message (``<RFC 3339 time> <line>``)."""
    who, live = principal(request), _live(request)
    pod = await requested_pod(request)
    if not may_follow(who, pod):
        raise not_found("pod", request.match_info["pod"])
    container = requested_container(request, pod)
    tail = query_int(request, "tailLines", 100, 0, BACKLOG)
    with _slot(request, "logs"):
        # before the upgrade, so that "not started yet" and "too many" are HTTP answers
        follow = await live.follows.acquire(pod, container, tail)
        try:
            ws, client = await _upgrade(request, "logs")
            await _serve(
                request,
                client,
                join=lambda _, c: follow.join(c, tail),
                leave=lambda _, c: follow.leave(c),
            )
        finally:
            live.follows.release(follow)
    return ws


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/ws/sessions", sessions_stream)
    router.add_get("/api/v1/ws/cluster", cluster_stream)
    router.add_get("/api/v1/ws/logs/{namespace}/{pod}", logs_stream)
