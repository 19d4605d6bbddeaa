"""TemplateRepository sync: fetch with dulwich (off the event loop), parse, store, materialise.

Triggers: create, spec change, resume, the ``stream.space/sync-requested`` annotation changing
(set by the facade's sync endpoints and webhook; a time in the future, which the webhook's rate
limit writes, is waited for first), and a timer that syncs a repository once its
``syncInterval`` (default ``SYNC_INTERVAL``) has passed since the last sync, unless ``suspend``.
One sync per repository at a time (a lock here; peering across replicas). A failing repository
only ever changes its own status.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.catalog.credentials import CREDENTIAL_SECRET_TYPE, credentials_from_secret
from streamspace.catalog.git import Credentials, RepositoryError, fetch_snapshot
from streamspace.catalog.netguard import NetworkGuard
from streamspace.catalog.parse import ParseResult, parse_repository, sync_limits
from streamspace.conditions import Condition, merge_conditions, parse_timestamp, timestamp
from streamspace.config import Settings
from streamspace.db.catalog import (
    delete_catalog,
    replace_catalog,
)
from streamspace.durations import parse_duration
from streamspace.lifecycle import Event
from streamspace.sync_requests import SYNC_REQUESTED, wait_before_sync
from streamspace_operator import plugins, timers
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import timed, timing_sync

log = logging.getLogger(__name__)

REPOSITORY_LABEL = f"{API_GROUP}/repository"
KIND = "TemplateRepository"
TIMER_TICK = 30.0  # how often due syncs are looked for; syncs happen within one tick of due


def _now() -> datetime:
    return datetime.now(UTC)


async def credentials(ctx: Context, ns: str, spec: dict[str, Any]) -> Credentials:
    """The credentials ``spec.auth`` names, if that Secret is a credential for the URL's host."""
    auth = spec.get("auth") or {}
    kind = str(auth.get("type") or "none")
    if kind == "none":
        return Credentials()
    secret_name = str((auth.get("secretRef") or {}).get("name"))
    secret = await ctx.api.get_typed_secret(ns, secret_name, CREDENTIAL_SECRET_TYPE)
    return credentials_from_secret(secret, secret_name, kind, str(spec.get("url", "")))


def _due(body: dict[str, Any], default: timedelta) -> bool:
    """A scheduled sync is due once ``syncInterval`` has passed since the last sync. A
    repository never synced is not: its create handler syncs it (a timer firing at creation
    would otherwise sync it a second time, right after)."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    if spec.get("suspend"):
        return False
    interval = parse_duration(str(spec["syncInterval"])) if spec.get("syncInterval") else default
    last = parse_timestamp(status.get("lastSyncTime"))
    return last is not None and _now() - last >= interval


async def sync(ctx: Context, ns: str, name: str, *, scheduled: bool = False) -> None:
    """Sync one repository; ``scheduled`` syncs only if still due once the lock is held."""
    async with ctx.locks[(ns, f"templaterepository/{name}")]:
        body = await ctx.api.get_custom("TemplateRepository", ns, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return
        if scheduled and not _due(body, ctx.settings.sync.interval):
            return
        generation = int(body["metadata"].get("generation") or 0)
        previous = dict(body.get("status") or {})
        await ctx.api.patch_status("TemplateRepository", ns, name, {"phase": "Syncing"})
        try:
            with timing_sync():
                status, events = await _sync(ctx, body)
        except RepositoryError as exc:
            status = {
                "phase": "Failed",
                "message": str(exc),
                "lastSyncTime": timestamp(_now()),
            }
            events = [Event("Warning", str(exc.reason), str(exc))]
            ready = Condition("Ready", False, str(exc.reason), str(exc))
        else:
            ready = Condition("Ready", True, "Synced", status["message"][:1024])
        status["observedGeneration"] = generation
        status["conditions"] = merge_conditions(
            previous.get("conditions"), [ready], generation, _now()
        )
        await ctx.api.patch_status("TemplateRepository", ns, name, status)
        for event in events:
            await ctx.api.post_event(body, event)
    if status["phase"] == "Ready" and (body.get("spec") or {}).get("type") == "plugin":
        await plugins.repository_synced(ctx, ns, name)


async def _sync(ctx: Context, body: dict[str, Any]) -> tuple[dict[str, Any], list[Event]]:
    meta, spec = body["metadata"], body.get("spec") or {}
    ns = meta["namespace"]
    if ctx.db is None:
        raise RepositoryError("no database configured (DATABASE_URL): nowhere to store a catalog")
    kind = str(spec.get("type", "template"))
    limits = sync_limits(ctx.settings.sync)
    creds = await credentials(ctx, ns, spec)
    snapshot = await asyncio.to_thread(
        fetch_snapshot,
        str(spec.get("url", "")),
        str(spec.get("branch", "main")),
        ctx.settings.sync.work_dir,
        creds,
        repository_id=meta["uid"],
        allow_local=ctx.settings.sync.allow_local_repos,
        ca_bundle=ctx.settings.sync.ca_bundle,
        guard=NetworkGuard(allow_private=ctx.settings.network.allow_private_networks),
        wanted=("manifest.json",) if kind == "plugin" else (".yaml", ".yml"),
        limits=limits,
    )
    previous = body.get("status") or {}
    if (
        snapshot.commit == previous.get("lastSyncCommit")
        and previous.get("phase") == "Ready"
        and previous.get("observedGeneration") == meta.get("generation")
    ):
        # Same commit, same spec: the catalog already says what this commit says.
        unchanged = f"unchanged at {snapshot.commit[:12]}"
        return {
            "phase": "Ready",
            "lastSyncTime": timestamp(_now()),
            "message": str(previous.get("message") or unchanged),
        }, []
    parsed = await asyncio.to_thread(parse_repository, snapshot.files, kind, limits)
    async with ctx.db.connection() as conn, conn.transaction():
        await replace_catalog(conn, meta["uid"], parsed.templates, parsed.plugins)
    conflicts = []
    if kind == "template" and spec.get("autoInstall"):
        conflicts = await _materialise(ctx, body, parsed)
    message = parsed.summary(kind)
    if conflicts:
        message += ". not installed, a Template of that name exists: " + ", ".join(conflicts)
    if snapshot.skipped:
        message += ". skipped: " + "; ".join(snapshot.skipped[:20])
    events = [Event("Normal", "Synced", f"{message[:900]} at {snapshot.commit[:12]}")]
    return {
        "phase": "Ready",
        "lastSyncTime": timestamp(_now()),
        "lastSyncCommit": snapshot.commit,
        "templateCount": len(parsed.templates),
        "pluginCount": len(parsed.plugins),
        "message": message[:32768],
    }, events


async def _materialise(ctx: Context, repo: dict[str, Any], parsed: ParseResult) -> list[str]:
    """Template objects owned by the repository: created, updated and pruned to match it.

    A Template of the same name that the repository does not own (made by a user, or by another
    repository) is left alone; its name is returned.
    """
    meta = repo["metadata"]
    ns = meta["namespace"]
    owner = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "TemplateRepository",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }

    def ours(template: dict[str, Any]) -> bool:
        owners = template["metadata"].get("ownerReferences") or []
        return any(o.get("uid") == meta["uid"] for o in owners)

    existing = {t["metadata"]["name"]: t for t in await ctx.api.list_custom("Template", ns, "")}
    conflicts = []
    wanted = set()
    for template in parsed.templates:
        current = existing.get(template.name)
        if current is not None and not ours(current):
            conflicts.append(template.name)
            continue
        manifest = dict(template.manifest)
        manifest["metadata"] = {
            "name": template.name,
            "namespace": ns,
            "labels": {REPOSITORY_LABEL: meta["name"]},
            "ownerReferences": [owner],
        }
        await ctx.api.apply_custom("Template", manifest)
        wanted.add(template.name)
    for name, current in existing.items():
        if name not in wanted and ours(current):
            await ctx.api.delete_custom("Template", ns, name)
    return conflicts


# -- handlers ----------------------------------------------------------------------------------


async def repository_changed(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    await sync(context(memo), namespaced(namespace), name)


async def sync_requested(
    memo: kopf.Memo, namespace: str | None, name: str, new: Any, **_: Any
) -> None:
    """A sync request: at once, or at the (rate-limited) time the request names."""
    ctx = context(memo)
    wait = wait_before_sync(
        new if isinstance(new, str) else None, _now(), ctx.settings.sync.request_interval
    )
    if wait is not None:  # at most request_interval: the object's other events wait as long
        await asyncio.sleep(wait.total_seconds())
    await sync(ctx, namespaced(namespace), name)


async def repository_due(
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    **_: Any,
) -> None:
    """Sync when ``syncInterval`` has passed since the last sync (timers tick more often);
    checked on Kopf's copy first, then again on a fresh read under the repository's lock."""
    ctx = context(memo)
    if _due({"spec": dict(spec), "status": dict(status)}, ctx.settings.sync.interval):
        await sync(ctx, namespaced(namespace), name, scheduled=True)


async def repository_deleted(
    memo: kopf.Memo, namespace: str | None, name: str, uid: str, **_: Any
) -> None:
    """Forget a deleted repository's catalog rows, after a sync still running for it.

    Best effort, with no finalizer holding the deletion: a repository deleted while no operator
    runs leaves its rows behind, which no API shows (the catalog is read joined to the mirror of
    existing repositories).
    """
    ctx = context(memo)
    if ctx.db is None:
        return
    lock = ctx.locks[(namespaced(namespace), f"templaterepository/{name}")]
    async with lock, ctx.db.connection() as conn:
        await delete_catalog(conn, uid)
    log.info("repository %s/%s deleted; its catalog rows are gone", namespace, name)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    repos = (API_GROUP, API_VERSION, "templaterepositories")
    changed = timed(KIND)(repository_changed)
    kopf.on.create(*repos, registry=registry, backoff=10)(changed)
    kopf.on.update(*repos, registry=registry, field="spec", backoff=10)(changed)
    annotation = ("metadata", "annotations", SYNC_REQUESTED)  # a tuple: the key holds dots
    kopf.on.field(*repos, registry=registry, id="sync_requested", field=annotation, backoff=10)(
        timed(KIND, "sync_requested")(sync_requested)
    )
    tick = min(TIMER_TICK, settings.sync.interval.total_seconds())
    timers.timer(registry, repos, id="sync_due", interval=tick)(
        timed(KIND, "sync_due")(repository_due)
    )
    # Not an on.delete handler: that would put a finalizer on every repository (decision 91).
    kopf.on.event(*repos, registry=registry, id="repository_deleted", when=timers.deleted)(
        timed(KIND)(repository_deleted)
    )
