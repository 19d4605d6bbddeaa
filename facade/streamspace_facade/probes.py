"""Kubernetes probes of the facade: ``GET /health`` (liveness) and ``GET /ready`` (readiness).

Liveness says only that the process serves requests: restarting a facade because PostgreSQL or
the API server is away would not bring them back. Readiness says that this replica can do its
work, so that a Service sends it traffic only then: the Kubernetes client is connected and has
listed the Sessions once (the credentials and RBAC work), PostgreSQL answers when one is
configured, and the process is not shutting down. Both are public and cheap; neither says more
than which part is not ready (never an address or an error text from a dependency).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from streamspace_facade.errors import ApiError
from streamspace_facade.responses import json_response
from streamspace_facade.state import Services, services
from streamspace_facade.storage import StorageError

READY_WAIT = 2.0
"""Seconds the readiness check waits for PostgreSQL (the probe's own timeout is longer)."""

OK = "ok"
NOT_CONFIGURED = "not configured"


async def health(request: web.Request) -> web.Response:
    """Liveness, plus what this replica is doing; 200 while the process serves requests."""
    mirror = services(request).mirror
    return json_response(
        {
            "status": "ok",
            "mirror": None if mirror is None else ("writer" if mirror.leader else "standby"),
            "mirrorReady": bool(mirror is not None and mirror.ready.is_set()),
        }
    )


def _kubernetes(svc: Services) -> str:
    if svc.kube is None:
        return "not connected"
    live = svc.live
    if live is None or not live.informer.synced.is_set():
        return "sessions not listed yet"
    return OK


async def _database(svc: Services) -> str:
    if svc.storage is None:
        return NOT_CONFIGURED
    try:
        async with asyncio.timeout(READY_WAIT):
            await svc.storage.database.ping(READY_WAIT)
    except (TimeoutError, StorageError):
        return "unreachable"
    return OK


async def ready(request: web.Request) -> web.Response:
    """Readiness: 200 with every check ``ok`` (or the database ``not configured``), else 503
    naming what is not ready in ``details.checks``."""
    svc = services(request)
    checks = {"kubernetes": _kubernetes(svc), "database": await _database(svc)}
    fine = (OK, NOT_CONFIGURED)
    problems = [f"{part} {state}" for part, state in checks.items() if state not in fine]
    if svc.stopping:
        problems.insert(0, "shutting down")
    if problems:
        raise ApiError(503, "UNAVAILABLE", "not ready: " + ", ".join(problems), {"checks": checks})
    return json_response({"status": "ready", "checks": checks})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/health", health)
    router.add_get("/ready", ready)
