"""SessionQuota in the operator: whether a session may start, and who to look at again when
room frees up.

The quotas and each user's Sessions come from Kopf indexes (the watches), never from a counter.
``hold`` runs the admission order of ``streamspace.quotas`` over the user's Sessions of the
namespace and answers the limit that keeps a session from starting (None: it may). Groups
come from the database (``users.groups_of``, kept ``GROUPS_TTL`` seconds); without a database
only quotas naming the user and default ones apply (decision 171).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.db.users import groups_of
from streamspace.quotas import Excess, Sizing, consuming, held, held_back, select, wants_running
from streamspace.templates import Resources, normalize_resources
from streamspace_operator.cache import QUOTAS, USER_SESSIONS
from streamspace_operator.context import Context

log = logging.getLogger(__name__)

GROUPS_TTL = 30.0
"""Seconds a user's groups are trusted before the database is asked again."""


async def groups(ctx: Context, user: str) -> list[str]:
    if ctx.db is None:
        return []
    now = time.monotonic()
    kept = ctx.groups.get(user)
    if kept is not None and now - kept[0] < GROUPS_TTL:
        return kept[1]
    try:
        async with ctx.db.connection() as conn:
            found = await groups_of(conn, user)
    except Exception as exc:  # the database is down: the last known groups, else none
        log.warning("groups of %s unavailable: %s", user, exc)
        return kept[1] if kept is not None else []
    if len(ctx.groups) > 10_000:
        ctx.groups.clear()
    ctx.groups[user] = (now, found)
    return found


def quotas_in(ctx: Context, namespace: str) -> list[dict[str, Any]]:
    index = ctx.cache.indexes.get(QUOTAS)
    return list(index[namespace]) if index is not None and namespace in index else []


def user_sessions(ctx: Context, namespace: str, user: str) -> list[dict[str, Any]]:
    """The user's Sessions in ``namespace``, each as the cache holds it now."""
    index = ctx.cache.indexes.get(USER_SESSIONS)
    names = (
        set(index[(namespace, user)]) if index is not None and (namespace, user) in index else ()
    )
    found = (ctx.cache.session(namespace, name) for name in sorted(names))
    return [s for s in found if s is not None and not s["metadata"].get("deletionTimestamp")]


def sizing(ctx: Context, namespace: str) -> Sizing:
    def template_resources(name: str) -> Resources:
        template = ctx.cache.template(namespace, name) or {}
        return normalize_resources((template.get("spec") or {}).get("defaultResources"))

    return Sizing(template_resources, ctx.settings.sessions.home_size)


async def hold(ctx: Context, body: Mapping[str, Any]) -> Excess | None:
    """The quota limit that keeps Session ``body`` from starting; None when it may start (or
    runs already: a lowered quota never stops a session)."""
    if not wants_running(body) or consuming(body):
        return None
    meta = body["metadata"]
    namespace, user = str(meta["namespace"]), str((body.get("spec") or {}).get("user", ""))
    found = quotas_in(ctx, namespace)
    if not found:
        return None
    by_group = any((q.get("spec") or {}).get("groups") for q in found)
    quota = select(found, user, await groups(ctx, user) if by_group else ())
    if quota is None:
        return None
    return held_back(quota, user_sessions(ctx, namespace, user), body, sizing(ctx, namespace))


def waiting(ctx: Context, namespace: str, user: str | None = None) -> list[str]:
    """Names of the held sessions (of ``user``, or of everyone) in ``namespace``: the ones to
    reconcile when room may have freed up."""
    index = ctx.cache.indexes.get(USER_SESSIONS)
    if index is None:
        return []
    keys = [(namespace, user)] if user is not None else [k for k in index if k[0] == namespace]
    names = []
    for ns, owner in keys:
        names += [s["metadata"]["name"] for s in user_sessions(ctx, ns, owner) if held(s)]
    return sorted(names)


# -- indexes ----------------------------------------------------------------------------------


async def index_quota(namespace: str | None, body: kopf.Body, **_: Any) -> Any:
    return {namespace: {"metadata": {"name": body["metadata"]["name"]}, "spec": dict(body.spec)}}


async def index_user_session(namespace: str | None, name: str, spec: kopf.Spec, **_: Any) -> Any:
    return {(namespace, str(spec.get("user", ""))): name}


def register(registry: kopf.OperatorRegistry) -> None:
    kopf.index(API_GROUP, API_VERSION, "sessionquotas", registry=registry, id=QUOTAS)(index_quota)
    kopf.index(API_GROUP, API_VERSION, "sessions", registry=registry, id=USER_SESSIONS)(
        index_user_session
    )
