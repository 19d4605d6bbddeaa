"""Registration of every Kopf handler into one explicit registry.

Handlers are registered by function, not at import time, so that intervals and other choices
come from the Settings object the operator was started with. The process-wide pieces live here:
connecting the Kubernetes client at start-up, logging Kopf in with the same credentials, closing
the client at clean-up, and what the liveness endpoint reports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import kopf
from psycopg_pool import AsyncConnectionPool

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace.db.migrate import migrate
from streamspace_operator import (
    connections,
    memory,
    metrics,
    plugins,
    repositories,
    schedules,
    sessions,
    templates,
    timers,
)
from streamspace_operator.context import context
from streamspace_operator.kube import MAX_IN_FLIGHT, Kube, connect
from streamspace_operator.ratelimit import RateLimiter


async def connect_client(memo: kopf.Memo, **kwargs: Any) -> None:
    ctx = context(memo)
    ctx.cache.bind(kwargs)  # Kopf passes the indexes to startup handlers too
    if ctx.kube is None:
        kube = ctx.settings.kubernetes
        limiter = RateLimiter(kube.qps, kube.burst, max_in_flight=MAX_IN_FLIGHT)
        ctx.kube = Kube(await connect(kube.kubeconfig, limiter))
    if ctx.db is None and ctx.settings.database.configured:
        await asyncio.to_thread(migrate, ctx.settings.database.url)
        ctx.db = AsyncConnectionPool(
            ctx.settings.database.url,
            min_size=1,
            max_size=4,
            open=False,
            kwargs={"autocommit": True},
        )
        await ctx.db.open(wait=True, timeout=30)
    if ctx.peering is not None:
        await ctx.kube.ensure_peering(ctx.peering, ctx.settings.kubernetes.served)
    if ctx.trimmer is None:
        ctx.trimmer = asyncio.create_task(memory.trim_forever(), name="malloc trim")


async def login(memo: kopf.Memo, **_: Any) -> kopf.AiohttpSession:
    """Kopf talks to the same cluster, as the same identity, as our own client.

    The HTTP session is built here, as Kopf would build it from the same ConnectionInfo, only
    to count its requests (``streamspace_kubernetes_requests_total{client="kopf"}``); Kopf
    owns and closes it, and calls this again for a fresh one when it has to log in anew.
    """
    cfg = context(memo).api.api.configuration
    bearer = str(
        (cfg.api_key or {}).get("BearerToken") or (cfg.api_key or {}).get("authorization") or ""
    )
    info = kopf.ConnectionInfo(
        server=str(cfg.host),
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        token=bearer.removeprefix("Bearer ").strip() or None,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers=info.as_http_headers(),
        trace_configs=[metrics.kopf_trace()],
    )
    return kopf.AiohttpSession(server=info.server, aiohttp_session=session)


async def close_client(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    for task in ctx.retries.values():
        task.cancel()
    ctx.retries.clear()
    if ctx.trimmer is not None:
        ctx.trimmer.cancel()
        ctx.trimmer = None
    if ctx.kube is not None:
        await ctx.kube.api.close()
        ctx.kube = None
    if ctx.db is not None:
        await ctx.db.close()
        ctx.db = None


def report_namespace(memo: kopf.Memo, **_: Any) -> str:
    """Shown by the liveness endpoint: which namespaces this replica serves ("*": all)."""
    served = context(memo).settings.kubernetes.served
    return "*" if served is None else ",".join(served)


def build_registry(settings: Settings) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    kopf.on.startup(registry=registry)(connect_client)
    kopf.on.login(registry=registry)(login)
    kopf.on.cleanup(registry=registry)(close_client)
    kopf.on.probe(registry=registry, id="namespace")(report_namespace)
    sessions.register(registry, settings)
    templates.register(registry, settings)
    connections.register(registry, settings)
    schedules.register(registry, settings)
    repositories.register(registry, settings)
    plugins.register(registry, settings)
    metrics.register(registry, settings)
    # The kinds with timers (sessions: drift, stale, idle and schedule checks; repositories:
    # due syncs; plugins: drift).
    for plural in ("sessions", "templaterepositories", "plugins"):
        timers.stop_timers_on_deletion(registry, (API_GROUP, API_VERSION, plural))
    return registry
