"""Plugin reconciliation: gather the catalog entry and children, let ``policy.decide`` choose,
apply the plan.

One idempotent reconcile per Plugin, triggered by its create/update/resume, by a sync of its
repository (``repository_synced``), by events of its Deployment and by a drift timer
(``RECONCILE_INTERVAL``: a Secret's configuration changed, a database that was down). The
catalog entry is found through the TemplateRepository named in
``spec.catalogPlugin.repository`` (same namespace, ``type: plugin``): its uid keys the
``catalog_plugins`` rows the sync wrote.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace.db.catalog import catalog_plugin
from streamspace.lifecycle import status_changed
from streamspace.manifests import MANAGED_BY
from streamspace.plugins.policy import (
    RUNTIME_KINDS,
    CatalogEntry,
    Gathered,
    PluginInput,
    decide,
)
from streamspace.plugins.secret import new_signing_secret, plugin_secret
from streamspace.plugins.workload import PLUGIN_ANNOTATION, child_name
from streamspace_operator import timers
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import timed

log = logging.getLogger(__name__)

RETRY_BACKOFF = 5.0
SECRET_LOOKS = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds between looks for an installer's Secret


async def find_entry(ctx: Context, plugin: PluginInput) -> tuple[CatalogEntry | None, str]:
    """The catalog entry the Plugin names, or why there is none."""
    ns = plugin.ref.namespace
    repo = await ctx.api.get_custom("TemplateRepository", ns, plugin.repository)
    if repo is None or (repo.get("spec") or {}).get("type") != "plugin":
        return None, f"no plugin repository {plugin.repository} in namespace {ns}"
    if ctx.db is None:
        return None, "the operator has no database (DATABASE_URL) to read the catalog from"
    async with ctx.db.connection() as conn:
        row = await catalog_plugin(conn, repo["metadata"]["uid"], plugin.catalog_name)
    if row is None:
        return None, f"plugin {plugin.catalog_name} is not in the catalog of {plugin.repository}"
    return CatalogEntry(*row), ""


async def gather(ctx: Context, plugin: PluginInput) -> Gathered:
    entry, problem = await find_entry(ctx, plugin)
    name, ns = child_name(plugin.ref.name), plugin.ref.namespace
    return Gathered(
        catalog=entry,
        catalog_problem=problem,
        secret=await ctx.api.get_child("Secret", ns, name),
        runtime={kind: await ctx.api.get_child(kind, ns, name) for kind in RUNTIME_KINDS},
    )


async def reconcile(ctx: Context, namespace: str, name: str) -> bool:
    """Decide and write; True when the Plugin waits for the Secret its installer provides."""
    async with ctx.locks[(namespace, f"plugin/{name}")]:
        kube = ctx.api
        body = await kube.get_custom("Plugin", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return False  # its Secret and runtime go with it through their owner references
        plugin = PluginInput.from_body(body)
        gathered = await gather(ctx, plugin)
        allow_private = ctx.settings.network.allow_private_networks
        plan = decide(plugin, gathered, datetime.now(UTC), allow_private)

        if plan.create_secret:
            created = await kube.create_secret(plugin_secret(plugin.ref, new_signing_secret(), {}))
            if not created:  # someone made one meanwhile: judge it on the next round
                raise kopf.TemporaryError("the plugin Secret appeared meanwhile", delay=1)
            log.info("created Secret %s for Plugin %s", child_name(name), name)
        for manifest in plan.apply:
            await kube.apply(manifest)
        if plan.scale_to_zero is not None:
            await kube.scale(namespace, child_name(name), 0, uid=plan.scale_to_zero)
        for kind, uid in plan.delete:
            await kube.delete(kind, namespace, child_name(name), uid=uid)
        if status_changed(plugin.status, plan.status):
            await kube.patch_status("Plugin", namespace, name, plan.status)
        for event in plan.events:
            await kube.post_event(body, event)
        return plan.waiting_secret


async def repository_synced(ctx: Context, namespace: str, repository: str) -> None:
    """A plugin repository synced: the Plugins installed from it see the new catalog (an
    upgrade, a new permission to approve) now rather than at the next drift tick."""
    for body in await ctx.api.list_custom("Plugin", namespace, ""):
        catalog = (body.get("spec") or {}).get("catalogPlugin") or {}
        if catalog.get("repository") != repository:
            continue
        name = body["metadata"]["name"]
        try:
            await reconcile(ctx, namespace, name)
        except Exception:  # the drift timer retries; the sync itself succeeded
            log.exception("reconciling Plugin %s/%s after a sync failed", namespace, name)


async def plugin_changed(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    ctx, ns = context(memo), namespaced(namespace)
    # The facade makes an installer's Secret just after the Plugin (it needs the Plugin's uid to
    # own it), and no watch of ours shows Secrets: while it is awaited, look again a few times
    # within seconds; after that the drift timer looks every RECONCILE_INTERVAL (decision 160).
    # The status says what is awaited meanwhile.
    for delay in SECRET_LOOKS:
        if not await reconcile(ctx, ns, name):
            return
        await asyncio.sleep(delay)
    await reconcile(ctx, ns, name)


async def runtime_changed(
    memo: kopf.Memo, namespace: str | None, meta: kopf.Meta, **_: Any
) -> None:
    """A plugin's Deployment changed: its availability may change the Plugin's readiness."""
    plugin = meta.annotations.get(PLUGIN_ANNOTATION)
    if plugin:
        await reconcile(context(memo), namespaced(namespace), plugin)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    plugins = (API_GROUP, API_VERSION, "plugins")
    changed = timed("Plugin")(plugin_changed)
    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator(*plugins, registry=registry, backoff=RETRY_BACKOFF)(changed)
    interval = settings.sessions.reconcile_interval.total_seconds()
    timers.timer(registry, plugins, id="plugin_drift", interval=interval, initial_delay=interval)(
        timed("Plugin", "plugin_drift")(plugin_changed)
    )
    kopf.on.event(
        "apps",
        "v1",
        "deployments",
        registry=registry,
        labels=MANAGED_BY,
        annotations={PLUGIN_ANNOTATION: kopf.PRESENT},
        id="plugin_runtime",
    )(timed("Plugin")(runtime_changed))
