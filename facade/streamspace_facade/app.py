"""The aiohttp application: built by a factory, state in typed app keys, no globals.

Middlewares, outermost first:

* ``measure`` times every request by route template and final status for ``/metrics``.
* ``httpcache.conditional`` tags ``GET`` answers (``ETag``, 304 on ``If-None-Match``), marks
  callers' answers ``private, no-cache`` and gzips them for clients that accept it.
* ``errors`` turns every failure into the JSON error shape (never a traceback); PostgreSQL
  being unreachable (``storage.StorageUnavailable``) is a 503, an unexpected bug a 500 whose
  details stay in the log.
* ``cors`` answers preflights and labels answers for browsers on ``CORS_ALLOWED_ORIGINS``.
* ``authenticate`` establishes the caller (Bearer JWT or API key) on every route but the
  public ones (health, readiness, version, the OpenAPI document, the signed webhook, the
  session access gate's check, which reads a credential of its own, and the web console's
  page and assets, which sign in through the API).
* ``audit.audit_trail`` writes one ``audit_log`` row for every authenticated mutating request.
* ``rate_limit`` (``limits``) answers 429 to a user over ``RATE_LIMIT_CREATE``/``_CONNECT``.
* ``idempotent`` (``idempotency``) answers a repeated POST with an ``Idempotency-Key`` once.

Resources (Kubernetes client, the storage layer with its PostgreSQL pool, HTTP client for OIDC,
the mirror task) live in one cleanup context, so start-up and shutdown happen in a fixed order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from streamspace import __version__
from streamspace.auth.access import PARAMETER as ACCESS_PARAMETER
from streamspace.config import Settings
from streamspace_facade import (
    admin,
    audit,
    catalog,
    connections,
    console,
    gate,
    httpcache,
    idempotency,
    limits,
    metrics,
    oidc_signin,
    paging,
    plugin_deliveries,
    plugins,
    probes,
    repositories,
    sessions,
    signin,
    usage,
    users,
    webhook,
    ws,
)
from streamspace_facade.audit import AuditLog
from streamspace_facade.auth import Authenticator
from streamspace_facade.deliveries import Deliverer
from streamspace_facade.errors import ApiError, invalid, unauthorized
from streamspace_facade.kube import Kube, connect
from streamspace_facade.mirror import Mirror, running
from streamspace_facade.openapi import add_routes as add_openapi
from streamspace_facade.responses import json_response
from streamspace_facade.state import PRINCIPAL, SERVICES, Services, services
from streamspace_facade.storage import Storage, StorageUnavailable
from streamspace_facade.users import Directory

log = logging.getLogger(__name__)

PUBLIC = frozenset(
    {
        "/health",
        "/ready",
        "/version",
        "/api/v1/openapi.json",
        "/webhooks/repository/sync",
        "/metrics",
        gate.AUTH_PATH,  # checks the gate's own credential, not a bearer token
        signin.PATH,  # checks the credential it is given itself
        oidc_signin.METHODS,
        oidc_signin.LOGIN,  # the browser is on its way to sign in
        oidc_signin.CALLBACK,  # checks the code, state and ID token itself
    }
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Kept for callers that only need the settings (the older name of this key).
SETTINGS = web.AppKey("settings", Settings)


def _error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status)


_HTTP_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    if any("\x00" in value for value in request.query.values()):
        return _error_response(invalid({"query": "must not contain NUL characters"}))
    try:
        return await handler(request)
    except ApiError as exc:
        return _error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_CODES.get(exc.status, "BAD_REQUEST" if exc.status < 500 else "ERROR")
        return _error_response(ApiError(exc.status, code, exc.reason))
    except StorageUnavailable as exc:
        log.warning("database unavailable for %s %s: %s", request.method, request.path, exc)
        return _error_response(ApiError(503, "UNAVAILABLE", "database unavailable"))
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error_response(ApiError(500, "INTERNAL", "internal error"))


CORS_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, Idempotency-Key",
    "Access-Control-Max-Age": "600",
}


@web.middleware
async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Browsers on ``CORS_ALLOWED_ORIGINS`` may call the API; nobody else gets CORS headers."""
    origin = request.headers.get("Origin")
    allowed = origin is not None and origin in services(request).settings.http.cors_allowed_origins
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        if not allowed:
            return _error_response(ApiError(403, "FORBIDDEN", "origin not allowed"))
        return web.Response(
            status=204,
            headers={"Access-Control-Allow-Origin": str(origin), "Vary": "Origin", **CORS_HEADERS},
        )
    response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = str(origin)
        response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC or console.is_public(request.path):
        return await handler(request)
    header = ws.authorization(request)
    if not header:
        raise unauthorized("authentication required: send Authorization: Bearer <token>")
    request[PRINCIPAL] = await services(request).auth.authenticate(header)
    return await handler(request)


SECRET_QUERY = frozenset({"token", "access_token", ACCESS_PARAMETER})


def loggable_path(request: web.BaseRequest) -> str:
    """The path and query with credentials in the query (WebSocket ``token=``) blanked out."""
    if not SECRET_QUERY & set(request.query):
        return request.path_qs
    query = [(k, "REDACTED" if k in SECRET_QUERY else v) for k, v in request.query.items()]
    return str(request.rel_url.with_query(query))


class AccessLog(AbstractAccessLogger):
    """One line per request, like aiohttp's, without the credentials browsers put in URLs; its
    parts are also record extras, so that with ``LOG_FORMAT=json`` they are fields of their own
    (``method``, ``path``, ``status``, ``bytes``, ``duration`` in seconds, ``remote``)."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        fields = {
            "remote": request.remote,
            "method": request.method,
            "path": loggable_path(request),
            "status": response.status,
            "bytes": response.body_length,
            "duration": round(time, 6),
        }
        self.logger.info(
            '%(remote)s "%(method)s %(path)s" %(status)s %(bytes)s %(duration).3fs',
            fields,
            extra=fields,
        )


async def version(request: web.Request) -> web.Response:
    return json_response({"name": "streamspace", "version": __version__, "api": "v1"})


def _resources(svc: Services) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = svc.settings
        if svc.kube is None:
            svc.kube = Kube(await connect(settings.kubernetes.kubeconfig))
        svc.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        if settings.database.configured:
            svc.storage = Storage.for_url(
                settings.database.url, pool_size=settings.http.db_pool_size, home=svc.namespace
            )
            await svc.storage.open()
            # the mirror writes through the same pool (its lock connection is its own)
            svc.mirror = Mirror(
                settings.database.url,
                svc.storage.database.pool,
                svc.kube,
                svc.scope,
                home=svc.namespace,
            )
            svc.mirror.worker = Deliverer(
                svc.storage.deliveries,
                svc.kube,
                settings.events,
                allow_private=settings.network.allow_private_networks,
                wake=svc.mirror.queued,
            ).run
        storage = svc.storage
        svc.audit = AuditLog(None if storage is None else storage.audit)
        svc.auth = Authenticator(
            settings.auth,
            None if storage is None else storage.apikeys,
            svc.http,
            users=None
            if storage is None
            else Directory(storage.users, settings.auth.api_key_cache_ttl.total_seconds()),
        )
        try:
            async with contextlib.AsyncExitStack() as stack:
                if svc.mirror is not None:
                    await stack.enter_async_context(running(svc.mirror))
                await stack.enter_async_context(audit.running(svc.audit))
                svc.live = await stack.enter_async_context(ws.running(svc))
                yield
        finally:
            if svc.storage is not None:
                await svc.storage.close()
            await svc.kube.api.close()
            await svc.http.close()
            # TLS connections to the API server finish closing on their own; give them the
            # moment aiohttp recommends before the loop goes away
            await asyncio.sleep(0.25)

    return context


async def _close_streams(app: web.Application) -> None:
    """On shutdown (the listener is closed already) readiness fails at once, and WebSocket
    clients hear that the server is going away (1001); requests in flight go on finishing."""
    svc = app[SERVICES]
    svc.stopping = True
    if svc.live is not None:
        await ws.shutdown(svc.live)


def create_app(settings: Settings, *, kube: Kube | None = None) -> web.Application:
    """The facade; ``kube`` replaces the client built from KUBECONFIG (tests)."""
    app = web.Application(
        client_max_size=1024**2,
        middlewares=[
            metrics.measure,
            httpcache.conditional,
            errors,
            cors,
            authenticate,
            audit.audit_trail,
            limits.rate_limits(settings.limits),
            idempotency.middleware(),
        ],
    )
    access_key = gate.access_key(settings)
    svc = Services(
        settings=settings,
        kube=kube,
        access_key=access_key,
        list_key=paging.token_key(access_key),
    )
    app[SERVICES] = svc
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources(svc))
    app.on_shutdown.append(_close_streams)
    probes.add_routes(app.router)
    app.router.add_get("/version", version)
    sessions.add_routes(app.router)
    connections.add_routes(app.router)
    catalog.add_routes(app.router)
    repositories.add_routes(app.router)
    plugins.add_routes(app.router)
    admin.add_routes(app.router)
    users.add_routes(app.router)
    usage.add_routes(app.router)
    webhook.add_routes(app.router)
    gate.add_routes(app.router)
    signin.add_routes(app.router)
    oidc_signin.add_routes(app.router)
    plugin_deliveries.add_routes(app.router)
    ws.add_routes(app.router)
    metrics.add_routes(app.router)
    console.add_routes(app.router)
    add_openapi(app.router)
    return app
