"""WebSocket streams: ``/api/v1/ws/sessions``, ``/api/v1/ws/cluster`` and pod logs.

The upgrade request is authenticated like any other request (the ``authenticate`` middleware);
browsers, which cannot set headers on a WebSocket, may put the token in the
``Sec-WebSocket-Protocol`` header as ``bearer.<token>`` next to ``streamspace.v1`` (the protocol
the server selects, so the token is never echoed), or in the ``token`` query parameter. A
browser's ``Origin`` must be one of ``CORS_ALLOWED_ORIGINS`` or the facade's own host.

Every client has a bounded queue of outgoing messages and a task that writes them. Publishing
never waits for a client: a client whose queue is full is too slow and is dropped (close code
1013), so one stalled reader never delays the others. The server pings every ``WS_HEARTBEAT``
and closes clients that stop answering; on shutdown every client gets close code 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import psycopg
from aiohttp import WSCloseCode, WSMsgType, web
from psycopg_pool import PoolTimeout

from streamspace.db.mirror import is_deleted
from streamspace.manifests import MANAGED_BY, USER_LABEL
from streamspace.naming import is_dns_label, is_object_name
from streamspace_facade import metrics
from streamspace_facade.errors import ApiError, conflict, forbidden, invalid, not_found
from streamspace_facade.kube import Kube, close_stream
from streamspace_facade.live import Informer, SessionFeed, message
from streamspace_facade.principal import Principal
from streamspace_facade.state import Services, principal, query_int, require, services

log = logging.getLogger(__name__)

PREFIX = "/api/v1/ws/"
PROTOCOL = "streamspace.v1"
BEARER_PROTOCOL = "bearer."
CLUSTER_INTERVAL = 5.0
CLOSE_TIMEOUT = 2.0
"""Seconds a closing handshake may take before the connection is simply cut."""
SYNC_WAIT = 10.0
"""Seconds a new subscriber waits for the first list of Sessions before a 503."""
MAX_CLIENT_MESSAGE = 4096
"""Clients have nothing to say beyond pongs and close frames; anything larger ends the stream."""

_END = object()


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


class Client:
    """One WebSocket subscriber: a bounded queue and the task that writes it out."""

    def __init__(
        self, request: web.Request, ws: web.WebSocketResponse, stream: str, queue_size: int
    ) -> None:
        self.ws = ws
        self.principal = principal(request)
        self.stream = stream
        self.queue: asyncio.Queue[Any] = asyncio.Queue(queue_size)
        self.closed = False
        self._transport = request.transport
        self._end = (int(WSCloseCode.OK), "")
        self._writer: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None

    def send(self, data: bytes) -> None:
        """Queue a text message (UTF-8 bytes, encoded once by the publisher)."""
        if self.closed:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            self.drop(WSCloseCode.TRY_AGAIN_LATER, "too slow", reason="slow")

    def end(self, code: int, text: str) -> None:
        """Close once everything queued so far is written."""
        if self.closed:
            return
        self._end = (code, text)
        try:
            self.queue.put_nowait(_END)
        except asyncio.QueueFull:
            self.drop(WSCloseCode.TRY_AGAIN_LATER, "too slow", reason="slow")
            return
        self.closed = True

    async def closing(self) -> None:
        """Wait for a close under way to finish."""
        if self._closer is not None:
            await self._closer

    def drop(self, code: int, text: str, *, reason: str) -> None:
        """Close now, whatever is queued (the writer may be stuck on a full socket)."""
        if self._closer is not None:
            return
        self.closed = True
        metrics.WS_DROPPED.labels(self.stream, reason).inc()
        log.info("closing %s stream of %s: %s", self.stream, self.principal.user, text)
        if self._writer is not None and self._writer is not asyncio.current_task():
            self._writer.cancel()
        self._closer = asyncio.create_task(self._close(code, text))

    async def _close(self, code: int, text: str) -> None:
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=code, message=text.encode()[:123])
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            pass
        finally:
            if self._transport is not None and not self._transport.is_closing():
                self._transport.abort()  # a peer that does not read never completes a handshake

    async def _write(self) -> None:
        while True:
            item = await self.queue.get()
            if item is _END:
                self._closer = asyncio.create_task(self._close(*self._end))
                return
            await self.ws.send_frame(item, WSMsgType.TEXT)

    async def run(self) -> None:
        """Serve until the client leaves or is closed: read (pongs, close), write the queue."""
        self._writer = asyncio.create_task(self._write())
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.ERROR:
                    break
        finally:
            self.closed = True
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await self._writer
            if self._closer is not None:
                await self._closer


@dataclass
class Live:
    """The streams of one facade process: the Session watch, its feed and every client."""

    feed: SessionFeed
    informer: Informer
    clients: set[Client] = field(default_factory=set)
    cluster_clients: set[Client] = field(default_factory=set)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def running(svc: Services) -> AsyncIterator[Live]:
    feed = SessionFeed(svc.settings.sessions.hibernate_warning)
    informer = Informer(svc.kube, "Session", svc.scope, feed.on_change)
    live = Live(feed=feed, informer=informer)
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


async def _synced(request: web.Request) -> Live:
    """The streams, once the Session copy is complete (a first snapshot is never partial)."""
    live = _live(request)
    try:
        async with asyncio.timeout(SYNC_WAIT):
            await live.informer.synced.wait()
    except TimeoutError:
        raise ApiError(503, "UNAVAILABLE", "sessions are not loaded yet; retry shortly") from None
    return live


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
    live = _live(request)
    live.clients.add(client)
    gauge = metrics.WS_CLIENTS.labels(client.stream)
    gauge.inc()
    task = asyncio.create_task(work) if work is not None else None
    try:
        join(live, client)
        await client.run()
    finally:
        leave(live, client)
        live.clients.discard(client)
        gauge.dec()
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def sessions_stream(request: web.Request) -> web.StreamResponse:
    """Own sessions (all of them for operators and admins): at once, on change, every 3 s."""
    await _synced(request)
    ws, client = await _upgrade(request, "sessions")
    await _serve(
        request,
        client,
        join=lambda live, c: live.feed.subscribe(c),
        leave=lambda live, c: live.feed.unsubscribe(c),
    )
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
    if svc.pool is None:
        return None
    try:
        async with svc.pool.connection(timeout=2) as conn:
            cur = await conn.execute("SELECT count(*) FROM catalog_templates")
            row = await cur.fetchone()
    except (psycopg.Error, PoolTimeout):
        return None
    return int(row[0]) if row else 0


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
    svc, live = services(request), await _synced(request)
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


def _may_read(who: Principal, pod: dict[str, Any]) -> bool:
    """Operators and admins read any pod in scope; a user only the pods of their sessions."""
    if who.sees_everything:
        return True
    labels = pod["metadata"].get("labels") or {}
    managed = all(labels.get(k) == v for k, v in MANAGED_BY.items())
    return managed and labels.get(USER_LABEL) == who.user


async def logs_stream(request: web.Request) -> web.StreamResponse:
    """Follow a container's log, a line per text message (``<RFC 3339 time> <line>``)."""
    svc, who = services(request), principal(request)
    namespace, name = request.match_info["namespace"], request.match_info["pod"]
    if not is_dns_label(namespace) or not is_object_name(name):
        raise not_found("pod", name)
    if svc.scope is not None and namespace != svc.scope:
        raise not_found("pod", name)
    try:
        pod = await svc.kube.get_pod(namespace, name)
    except ApiError as exc:
        raise not_found("pod", name) if exc.status == 404 else exc from None
    if not _may_read(who, pod):
        raise not_found("pod", name)
    containers = [str(c["name"]) for c in (pod.get("spec") or {}).get("containers") or []]
    container = request.query.get("container") or (containers[0] if containers else "")
    if container not in containers:
        raise invalid({"query.container": f"must be one of {containers}"})
    tail = query_int(request, "tailLines", 100, 0, 100_000)
    try:  # before the upgrade, so that "not started yet" is an HTTP answer
        stream = await svc.kube.pod_log(namespace, name, container, tail)
    except ApiError as exc:
        if exc.status == 400:
            raise conflict(f"no log yet: {exc.message}") from None
        raise
    try:
        ws, client = await _upgrade(request, "logs")
    except BaseException:
        close_stream(stream)
        raise
    ref = PodRef(namespace, name, str(pod["metadata"]["uid"]), pod["metadata"]["resourceVersion"])
    follow = _follow(svc.kube, ref, stream, client)
    await _serve(request, client, join=_nothing, leave=_nothing, work=follow)
    return ws


def _nothing(live: Live, client: Client) -> None:
    return None


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    uid: str
    version: str


async def _follow(kube: Kube, pod: PodRef, stream: aiohttp.ClientResponse, client: Client) -> None:
    """Lines until the log ends or the pod goes away; then a normal close that says which."""
    reading = asyncio.create_task(_lines(stream, client))
    gone = asyncio.create_task(_pod_gone(kube, pod))
    try:
        done, _ = await asyncio.wait({reading, gone}, return_when=asyncio.FIRST_COMPLETED)
        if gone in done and gone.result():
            client.end(WSCloseCode.OK, "pod deleted")
        elif reading in done:
            ended_by_deletion = await _exists(kube, pod) is False
            client.end(WSCloseCode.OK, "pod deleted" if ended_by_deletion else "log ended")
    finally:
        for task in (reading, gone):
            task.cancel()
        await asyncio.gather(reading, gone, return_exceptions=True)
        close_stream(stream)


async def _lines(stream: aiohttp.ClientResponse, client: Client) -> None:
    counter = metrics.WS_MESSAGES.labels("logs", "line")
    async for line in stream.content:
        # a text frame must be UTF-8: undecodable bytes of a log become U+FFFD
        client.send(line.rstrip(b"\r\n").decode(errors="replace").encode())
        counter.inc()


async def _exists(kube: Kube, pod: PodRef) -> bool | None:
    """Whether this incarnation of the pod is still there (None: cannot tell)."""
    try:
        current = await kube.get_pod(pod.namespace, pod.name)
    except ApiError as exc:
        return False if exc.status == 404 else None
    return current["metadata"]["uid"] == pod.uid and not is_deleted(current)


async def _pod_gone(kube: Kube, pod: PodRef) -> bool:
    """True once the pod (this incarnation of it) is deleted."""
    version = pod.version
    while True:
        try:
            events = kube.watch_pod(pod.namespace, pod.name, version, 290)
            async with contextlib.aclosing(events):  # a return closes the stream now
                async for kind, obj in events:
                    if kind == "ERROR":
                        break
                    version = str(obj["metadata"].get("resourceVersion") or version)
                    if kind == "DELETED" or obj["metadata"].get("uid") != pod.uid:
                        return True
        except ApiError as exc:
            log.info("watch of pod %s/%s interrupted: %s", pod.namespace, pod.name, exc.message)
            await asyncio.sleep(2)
        if await _exists(kube, pod) is False:
            return True
        with contextlib.suppress(ApiError):
            current = await kube.get_pod(pod.namespace, pod.name)
            version = str(current["metadata"]["resourceVersion"])


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/ws/sessions", sessions_stream)
    router.add_get("/api/v1/ws/cluster", cluster_stream)
    router.add_get("/api/v1/ws/logs/{namespace}/{pod}", logs_stream)
