"""SessionQuota on the REST paths: creates, wakes and connects to hibernated sessions that the
caller's quota does not allow answer 403 ``QUOTA_EXCEEDED``; ``quota_view`` shows a user's quota
and use.

The user's Sessions come from this process's watch (the WebSocket streams' ``Informer``), plus
the ones it wrote that the watch has not shown yet; the quotas are listed per check (a quota
created a moment ago applies at once). The decision is ``streamspace.quotas.refusal``, the
admission order the operator follows too. Checks and writes of one (namespace, user) are
serialised in this process, so concurrent creates cannot all see the same room (decision 172).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from streamspace.ownership import resource_version
from streamspace.quotas import ERROR_CODE, Excess, Quota, Sizing, admit, refusal, select
from streamspace.templates import Resources, normalize_resources
from streamspace_facade import state
from streamspace_facade.errors import ApiError
from streamspace_facade.principal import Principal
from streamspace_facade.state import Services, services
from streamspace_facade.storage import StorageError

log = logging.getLogger(__name__)

TEMPLATE_TTL = 10.0
"""Seconds a Template's default resources are trusted (they count for cpu and memory)."""
clock = time.monotonic
"""The clock of the TTLs below (a test sets another)."""
WRITTEN_TTL = 30.0
"""Seconds a Session this process wrote counts before its watch shows it: far beyond any watch
delay, and then a copy the watch no longer shows (deleted meanwhile) stops counting."""
SYNC_WAIT = 5.0
"""Seconds a check waits for the Session watch's first listing before answering 503."""


def quota_error(over: Excess) -> ApiError:
    return ApiError(403, ERROR_CODE, over.message, over.details())


async def _quotas(svc: Services, namespace: str) -> list[dict[str, Any]]:
    try:
        items, _ = await svc.kube.list("SessionQuota", namespace)
    except ApiError as exc:
        if exc.status == 404:  # the CRD is not installed: no quotas
            return []
        raise
    return list(items)


async def _groups(svc: Services, caller: Principal, user: str) -> Sequence[str]:
    """``user``'s groups: the caller's as authentication found them (``users``), another user's
    (an admin creating for them) from their users row; none without a database (only user and
    default quotas apply then, decision 171)."""
    if caller.user == user:
        return caller.groups
    if svc.storage is None:
        return ()
    try:
        row = await svc.storage.users.get(user)
    except StorageError as exc:
        log.warning("groups of %s unavailable, quota by user and default only: %s", user, exc)
        return ()
    return () if row is None else row.all_groups


async def governing(svc: Services, caller: Principal, namespace: str, user: str) -> Quota | None:
    """The SessionQuota of ``namespace`` that governs ``user`` (``caller`` or another), if any."""
    found = await _quotas(svc, namespace)
    if not found:
        return None
    by_group = any((q.get("spec") or {}).get("groups") for q in found)
    return select(found, user, await _groups(svc, caller, user) if by_group else ())


async def sessions_of(svc: Services, namespace: str, user: str) -> list[dict[str, Any]]:
    """``user``'s Sessions in ``namespace``: the watch's, each replaced by a newer copy this
    process wrote (dropped once the watch has caught up)."""
    if svc.live is not None:
        try:
            await asyncio.wait_for(svc.live.informer.synced.wait(), SYNC_WAIT)
        except TimeoutError:
            raise ApiError(503, "UNAVAILABLE", "the Session watch is not ready yet") from None
        watched = list(svc.live.informer.objects.values())
    else:
        watched, _ = await svc.kube.list("Session", namespace)
    mine = {
        str(o["metadata"]["name"]): o
        for o in watched
        if o["metadata"].get("namespace") == namespace and (o.get("spec") or {}).get("user") == user
    }
    book, now = svc.quota_book, clock()
    for key, (when, obj) in list(book.written.items()):
        seen = mine.get(key[1])
        if now - when > WRITTEN_TTL:  # the watch has shown it long since, or it is gone
            del book.written[key]
        elif key[0] != namespace or (obj.get("spec") or {}).get("user") != user:
            continue
        elif seen is not None and resource_version(seen) >= resource_version(obj):
            del book.written[key]
        else:
            mine[key[1]] = obj
    return list(mine.values())


async def sizing(svc: Services, namespace: str, sessions: Sequence[Mapping[str, Any]]) -> Sizing:
    """Sizing for ``sessions``: their Templates' default resources read first (cached)."""
    book, now = svc.quota_book, clock()
    names = {str((s.get("spec") or {}).get("template", "")) for s in sessions}
    for name in names:
        kept = book.templates.get((namespace, name))
        if kept is not None and now - kept[0] < TEMPLATE_TTL:
            continue
        try:
            template = await svc.kube.get("Template", namespace, name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            template = {}
        if len(book.templates) > 1000:
            book.templates.clear()
        resources = normalize_resources((template.get("spec") or {}).get("defaultResources"))
        book.templates[(namespace, name)] = (now, resources)

    def template_resources(name: str) -> Resources:
        kept = book.templates.get((namespace, name))
        return kept[1] if kept is not None else {}

    return Sizing(template_resources, svc.settings.sessions.home_size)


@contextlib.asynccontextmanager
async def admitting(
    request: web.Request, namespace: str, wanted: Mapping[str, Any]
) -> AsyncIterator[Callable[[Mapping[str, Any]], None]]:
    """Hold the (namespace, user) lock, refuse ``wanted`` (a Session as the request would leave
    it) with 403 when its quota does not admit it; the caller writes inside, and passes what it
    wrote to the function yielded, so the next check counts it before the watch shows it."""
    svc = services(request)
    user = str(wanted["spec"]["user"])
    async with svc.quota_book.locks[(namespace, user)]:
        quota = await governing(svc, state.principal(request), namespace, user)
        if quota is not None:
            mine = await sessions_of(svc, namespace, user)
            over = refusal(quota, mine, wanted, await sizing(svc, namespace, [*mine, wanted]))
            if over is not None:
                raise quota_error(over)
        yield lambda obj: remember(svc, obj)


def remember(svc: Services, obj: Mapping[str, Any]) -> None:
    meta = obj["metadata"]
    key = (str(meta["namespace"]), str(meta["name"]))
    svc.quota_book.written[key] = (clock(), dict(obj))


def forget(svc: Services, namespace: str, name: str) -> None:
    svc.quota_book.written.pop((namespace, name), None)


async def quota_view(request: web.Request, principal: Principal) -> dict[str, Any] | None:
    """The caller's SessionQuota in the facade's namespace and what they hold of it, for
    ``GET /api/v1/me``: ``{quota, namespace, limits, used}``; None when no quota governs them."""
    svc = services(request)
    namespace = svc.namespace
    quota = await governing(svc, principal, namespace, principal.user)
    if quota is None:
        return None
    mine = await sessions_of(svc, namespace, principal.user)
    used = admit(quota, mine, await sizing(svc, namespace, mine)).used
    return {
        "quota": quota.name,
        "namespace": namespace,
        "limits": quota.view(),
        "used": used.view(),
    }
