"""``WS /api/v1/ws/exec/{namespace}/{pod}``: a shell in a session pod, through ``pods/exec``.

Who: the session's owner, operators and admins; everyone else gets 404, as for a pod that does
not exist. Which pods: only pods of a Session, proven by the owner chain, not by names or labels
(anyone who can create pods can copy those): the pod's controller is a ReplicaSet whose
controller is a Deployment whose controller is a Session, each matched by uid, and the owner
is that Session's ``spec.user``. Everything is decided, and the exec opened upstream, before
the upgrade, so a refusal or a pod that cannot run the command is an HTTP answer.

Query: ``container`` (default the first), ``command`` (one of ``TERMINAL_SHELLS``, default the
first; a path, no arguments), ``tty`` (default true: one output stream, resizable; ``false``:
stdout and stderr apart). Messages: ``termproto``. Limits: ``TERMINAL_MAX_PER_USER`` and
``TERMINAL_MAX`` (429 before the upgrade), client messages of at most ``MAX_MESSAGE`` bytes
(1009), ``TERMINAL_IDLE_TIMEOUT`` without client input (4408), the credential re-checked every
``WS_REAUTH_INTERVAL`` (4401). Audit rows: ``open`` (refusals too, with their status) and
``close`` with the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from kubernetes_asyncio import client
from kubernetes_asyncio.stream import WsApiClient

from streamspace import API_GROUP, API_VERSION
from streamspace.config.terminal import TerminalSettings
from streamspace.manifests import MANAGED_BY, SESSION_LABEL
from streamspace.ownership import controller_of_kind, object_uid
from streamspace_facade import audit as audit_trail
from streamspace_facade import metrics, termproto
from streamspace_facade.errors import ApiError, conflict, forbidden, invalid, not_found
from streamspace_facade.kube import CLIENT, Kube, connect
from streamspace_facade.principal import Principal
from streamspace_facade.state import Services, audit, principal, services
from streamspace_facade.streamguard import StreamSlots, recheck
from streamspace_facade.ws import (
    PROTOCOL,
    authorization,
    origin_allowed,
    requested_container,
    requested_pod,
)

log = logging.getLogger(__name__)

STREAM = "terminal"
MAX_MESSAGE = 64 * 1024
"""Largest client message (a paste); a larger one closes the terminal with 1009."""
CLOSE_IDLE = 4408
"""Close code of a terminal idle for ``TERMINAL_IDLE_TIMEOUT`` (the twin of HTTP 408)."""
UPSTREAM_HEARTBEAT = 30.0


class Terminals:
    """The open terminals of one facade process and their own Kubernetes client."""

    def __init__(self, api: client.ApiClient, settings: TerminalSettings) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.settings = settings
        self.slots = StreamSlots(
            settings.max_per_user, settings.max_open, ("TERMINAL_MAX_PER_USER", "TERMINAL_MAX")
        )
        self.open: set[web.WebSocketResponse] = set()

    async def exec(
        self, namespace: str, pod: str, container: str, shell: str, tty: bool
    ) -> aiohttp.ClientWebSocketResponse:
        """The exec stream of ``shell`` in the container, through the API server."""
        connect_exec: Any = self.core.connect_get_namespaced_pod_exec  # command: a list
        try:
            opening: Any = await connect_exec(
                pod,
                namespace,
                container=container,
                command=termproto.command(shell),
                stdin=True,
                stdout=True,
                stderr=not tty,
                tty=tty,
                _preload_content=False,
                _headers={"sec-websocket-protocol": termproto.PROTOCOL},
            )
            upstream: aiohttp.ClientWebSocketResponse = await opening
        except aiohttp.WSServerHandshakeError as exc:
            metrics.kubernetes_request(CLIENT, "GET", exc.status)
            raise _refused(exc.status, pod, exc.message) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            metrics.kubernetes_request(CLIENT, "GET", None)
            log.warning("Kubernetes API unreachable for exec: %s", exc)
            raise ApiError(503, "UNAVAILABLE", "Kubernetes API unavailable") from None
        metrics.kubernetes_request(CLIENT, "GET", 101)
        return upstream

    async def shutdown(self) -> None:
        """Tell every terminal the server is going away (1001)."""
        await asyncio.gather(
            *(
                ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")
                for ws in list(self.open)
            ),
            return_exceptions=True,
        )


def _refused(status: int, pod: str, message: str) -> ApiError:
    if status == 404:
        return not_found("pod", pod)
    if status in (400, 409):  # the pod is not running, the container not started
        return conflict(f"cannot open a terminal in pod {pod!r} now: {message}")
    if status in (429, 503):
        return ApiError(503, "UNAVAILABLE", "Kubernetes API busy; retry shortly")
    log.error("exec in pod %s refused by the API server: %s %s", pod, status, message)
    return ApiError(502, "KUBERNETES_ERROR", f"Kubernetes API error ({status})")


@contextlib.asynccontextmanager
async def running(svc: Services) -> AsyncIterator[Terminals]:
    """Terminals on a client of their own: at most ``TERMINAL_MAX`` connections."""
    terminal = svc.settings.terminal
    api = await connect(
        svc.settings.kubernetes.kubeconfig,
        connections=terminal.max_open,
        factory=lambda configuration: WsApiClient(configuration, heartbeat=UPSTREAM_HEARTBEAT),
    )
    try:
        yield Terminals(api, terminal)
    finally:
        await api.close()


async def session_of(kube: Kube, pod: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Session that controls ``pod`` (pod → ReplicaSet → Deployment → Session, each by
    uid), or None when the pod is not a session's."""
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") or {}
    if any(labels.get(k) != v for k, v in MANAGED_BY.items()) or not labels.get(SESSION_LABEL):
        return None
    namespace = str(meta.get("namespace") or "")
    child: Mapping[str, Any] | None = pod
    for api_version, kind in CHAIN:
        owner = None if child is None else controller_of_kind(child, api_version, kind)
        if owner is None:
            return None
        child = await _get(kube, kind, namespace, owner[0])
        if child is None or object_uid(child) != owner[1]:
            return None
    return dict(child) if child is not None else None


CHAIN = (
    ("apps/v1", "ReplicaSet"),
    ("apps/v1", "Deployment"),
    (f"{API_GROUP}/{API_VERSION}", "Session"),
)
"""A session pod's controllers, from the pod up."""


async def _get(kube: Kube, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        if kind == "Session":
            return await kube.get(kind, namespace, name)
        return await kube.get_apps(kind, namespace, name)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise


def _options(request: web.Request, settings: TerminalSettings) -> tuple[str, bool]:
    """(shell, tty) from the query; 422 for values not allowed."""
    shell = request.query.get("command") or settings.shells[0]
    tty_raw = request.query.get("tty", "true").lower()
    problems = {}
    if shell not in settings.shells:
        problems["query.command"] = f"must be one of {', '.join(settings.shells)}"
    if tty_raw not in ("true", "false"):
        problems["query.tty"] = "must be true or false"
    if problems:
        raise invalid(problems)
    return shell, tty_raw == "true"


async def _target(request: web.Request, who: Principal) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod and its Session, when ``who`` may open a terminal there; else 404."""
    pod = await requested_pod(request)
    session = await session_of(services(request).kube, pod)
    owner = str(((session or {}).get("spec") or {}).get("user") or "")
    if session is None or not (who.sees_everything or owner == who.user):
        raise not_found("pod", request.match_info["pod"])
    return pod, session


async def terminal_stream(request: web.Request) -> web.StreamResponse:
    """A shell in a session container: ``stdin``/``resize`` in; ``stdout``/``stderr``/``exit``
    out."""
    svc, who = services(request), principal(request)
    terminals, live = svc.terminals, svc.live
    if not isinstance(terminals, Terminals) or live is None:
        raise ApiError(503, "UNAVAILABLE", "streams are not running")
    where = f"{request.match_info['namespace']}/{request.match_info['pod']}"[:500]
    audit(request, "open", "terminal", where)  # refusals are recorded with their status
    if not origin_allowed(request, svc.settings.http.cors_allowed_origins):
        metrics.WS_DROPPED.labels(STREAM, "origin").inc()
        raise forbidden("origin not allowed")
    shell, tty = _options(request, terminals.settings)
    pod, session = await _target(request, who)
    container = requested_container(request, pod)
    described = {
        "session": session["metadata"]["name"],
        "container": container,
        "command": shell,
        "tty": tty,
    }
    audit(request, "open", "terminal", where, described)
    ws = web.WebSocketResponse(
        protocols=(PROTOCOL,),
        compress=False,
        heartbeat=svc.settings.http.ws_heartbeat.total_seconds(),
        max_msg_size=MAX_MESSAGE,
    )
    if not ws.can_prepare(request).ok:  # before any exec: a plain GET opens no shell
        raise ApiError(426, "UPGRADE_REQUIRED", "this is a WebSocket endpoint")
    with live.slots.slot(who.user, STREAM), terminals.slots.slot(who.user, STREAM):
        upstream = await terminals.exec(
            pod["metadata"]["namespace"], pod["metadata"]["name"], container, shell, tty
        )
        try:
            await ws.prepare(request)
            await svc.audit.write(audit_trail.record(request, 101, None))
            terminals.open.add(ws)
            gauge = metrics.WS_CLIENTS.labels(STREAM)
            gauge.inc()
            try:
                session_end = await Relay(request, ws, upstream, terminals.settings).run()
            finally:
                terminals.open.discard(ws)
                gauge.dec()
        finally:
            await upstream.close()
    audit(request, "close", "terminal", where, {**described, **session_end})
    return ws


class Relay:
    """One open terminal: client messages to the pod, its output to the client, until either
    side ends, the client idles or its credential fails; then the client hears why."""

    def __init__(
        self,
        request: web.Request,
        ws: web.WebSocketResponse,
        upstream: aiohttp.ClientWebSocketResponse,
        settings: TerminalSettings,
    ) -> None:
        self.request = request
        self.ws = ws
        self.upstream = upstream
        self.settings = settings
        self.heard = asyncio.Event()
        self.end: dict[str, Any] = {"exitCode": None, "reason": "client closed"}
        self.close: tuple[int, str] = (int(WSCloseCode.OK), "")

    def stop(self, code: int, text: str, reason: str) -> None:
        self.end["reason"] = reason
        self.close = (code, text)

    async def from_client(self) -> None:
        async for msg in self.ws:
            if msg.type is WSMsgType.ERROR:  # aiohttp closed it: 1009 for a message too big
                too_big = getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG
                self.end["reason"] = "message too big" if too_big else "client error"
                return
            if msg.type is not WSMsgType.TEXT:
                self.stop(WSCloseCode.UNSUPPORTED_DATA, "messages are JSON text", "bad message")
                return
            try:
                said = termproto.parse_client(msg.data)
            except termproto.BadMessage as exc:
                self.stop(WSCloseCode.UNSUPPORTED_DATA, str(exc), "bad message")
                return
            self.heard.set()
            await self.upstream.send_bytes(termproto.upstream(said))

    async def from_pod(self) -> None:
        outputs = {
            termproto.STDOUT: termproto.Output("stdout"),
            termproto.STDERR: termproto.Output("stderr"),
        }
        async for msg in self.upstream:
            if msg.type is not WSMsgType.BINARY or not msg.data:
                continue
            channel, data = msg.data[0], msg.data[1:]
            if channel in outputs:
                out = outputs[channel].message(data)
                if out is not None:
                    await self.ws.send_str(json.dumps(out))
            elif channel == termproto.STATUS and data:
                said = termproto.exit_message(json.loads(data))
                self.end["exitCode"] = said["code"]
                await self.ws.send_str(json.dumps(said))
                self.stop(WSCloseCode.OK, "exited", "exited")
                return
        await self.ws.send_str(json.dumps(termproto.LOST))
        self.stop(WSCloseCode.OK, "pod connection ended", "pod connection ended")

    async def idle(self) -> None:
        limit = self.settings.idle_timeout.total_seconds()
        while True:
            try:
                async with asyncio.timeout(limit):
                    await self.heard.wait()
            except TimeoutError:
                self.stop(CLOSE_IDLE, "idle timeout", "idle timeout")
                return
            self.heard.clear()

    async def run(self) -> dict[str, Any]:
        """Relay until the first side ends; close the client; what ended it (the audit row)."""
        svc, who = services(self.request), principal(self.request)
        jobs = [self.from_client(), self.from_pod(), self.idle()]
        header = authorization(self.request)
        if header is not None:
            interval = svc.settings.http.ws_reauth_interval.total_seconds()
            failed = lambda code, text: self.stop(code, text, "credentials")  # noqa: E731
            jobs.append(recheck(svc.auth.authenticate, header, who, interval, failed))
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for result in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(result, Exception):  # a side went away mid-write
                    log.info("terminal of %s ended: %r", who.user, result)
            if not self.ws.closed:
                code, text = self.close
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await self.ws.close(code=code, message=text.encode()[:123])
        return self.end


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/ws/exec/{namespace}/{pod}", terminal_stream)
