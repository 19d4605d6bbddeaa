"""Which session a request means, and whether its caller may see, use or manage it.

A session is the caller's to see when they own it or it is shared with them
(``streamspace.sharing``); operators and admins see and manage every session. Anyone without
access gets 404, exactly as for a missing session, so ids cannot be probed; a shared user who
asks for more than their share allows gets 403 (they know the session exists).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from streamspace import sharing
from streamspace.db.mirror import is_deleted
from streamspace.naming import is_dns_label
from streamspace_facade.errors import ApiError, conflict, forbidden, not_found
from streamspace_facade.principal import Principal
from streamspace_facade.state import principal, services

PATCH_ATTEMPTS = 20
"""A conditioned write reads again after a conflict, this often: every status write of the
operator (activity, phase) moves the resourceVersion."""


def caller_access(who: Principal, spec: Mapping[str, Any]) -> str | None:
    """The API's ``access`` field for ``who`` on a session with ``spec``: ``owner``,
    ``control``, ``view``, ``admin`` (seen through an operator's or admin's role) or None."""
    access = sharing.access_of(spec, who.user)
    if access is None and who.sees_everything:
        return sharing.ADMIN
    return access


def may(who: Principal, spec: Mapping[str, Any], need: str) -> bool:
    """Whether ``who`` may act on the session at level ``need`` (view, control or owner)."""
    return who.sees_everything or sharing.allows(sharing.access_of(spec, who.user), need)


def object_namespace(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"]["namespace"])


def _namespace_of(request: web.Request, name: str) -> str:
    """Where session ``name`` lives: the facade's namespace, or with ``ALL_NAMESPACES`` the
    ``?namespace=`` given, else the one namespace where the caller can see a session of that
    name (the streams' copy of the Sessions knows), else ``NAMESPACE``."""
    svc = services(request)
    if svc.scope is not None:
        return svc.scope
    asked = request.query.get("namespace")
    if asked:
        if not is_dns_label(asked):
            raise not_found("session", name)
        return asked
    who = principal(request)
    objects = svc.live.feed.objects.values() if svc.live is not None else ()
    found = {
        object_namespace(o)
        for o in objects
        if o["metadata"]["name"] == name and may(who, o.get("spec") or {}, sharing.VIEW)
    }
    if len(found) > 1:
        raise conflict(
            f"session {name!r} exists in namespaces {', '.join(sorted(found))}; add ?namespace="
        )
    return found.pop() if found else svc.namespace


async def session_for(request: web.Request, name: str, need: str) -> dict[str, Any]:
    """The Session named ``name`` if the caller has ``need`` access to it (view, control or
    owner); 404 as if missing without any access, 403 with too little."""
    svc = services(request)
    try:
        obj = await svc.kube.get("Session", _namespace_of(request, name), name)
    except ApiError as exc:
        if exc.status == 404:
            raise not_found("session", name) from None
        raise
    obj = dict(obj)
    who, spec = principal(request), obj.get("spec") or {}
    if is_deleted(obj) or not may(who, spec, sharing.VIEW):
        raise not_found("session", name)
    if not may(who, spec, need):
        raise forbidden(
            f"session {name!r} is shared with you for {sharing.access_of(spec, who.user)}; "
            f"this needs {need} access"
        )
    return obj


async def own_session(request: web.Request, name: str) -> dict[str, Any]:
    """The Session named ``name`` if the caller may manage it (owner, operator, admin)."""
    return await session_for(request, name, sharing.OWNER)


async def rewrite(
    request: web.Request,
    name: str,
    need: str,
    build: Callable[[dict[str, Any]], dict[str, Any]],
    apply: Callable[[dict[str, Any], dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read session ``name`` (``need`` access), merge-patch it with ``build(session)`` (which
    may refuse by raising, and conditions the write by putting the resourceVersion read in the
    patch's metadata), and on a 409 read and build again; the Session before and after.
    ``apply(session, patch)`` writes the patch instead of a plain merge patch (a wake checks
    the quota around its write)."""
    svc = services(request)
    attempts = PATCH_ATTEMPTS
    while True:
        before = await session_for(request, name, need)
        try:
            patch = build(before)
            if apply is None:
                after: dict[str, Any] = await svc.kube.patch(
                    "Session", object_namespace(before), name, patch
                )
            else:
                after = await apply(before, patch)
        except ApiError as exc:
            attempts -= 1
            if exc.status != 409 or attempts == 0:
                raise
            continue
        return before, after
