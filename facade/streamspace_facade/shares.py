"""Sharing a session and handing it over: ``spec.sharedWith`` and ``spec.user`` written for the
owner (shares) and for admins (transfers), with an audit row for each (decisions 175-177).

Every change is conditioned on the resourceVersion read (a merge patch replaces the whole list, so
two concurrent shares must not drop each other: a 409 reads again). A change that takes
``control`` away from someone ends their connections to the session at once, and is applied to
this replica's watched copy before the answer, so its access gate refuses them at once too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from streamspace import sharing
from streamspace.db.mirror import CONNECTIONS, SESSIONS
from streamspace.naming import is_dns_label, label_value
from streamspace_facade.errors import ApiError, conflict, forbidden, invalid, not_found
from streamspace_facade.responses import json_response
from streamspace_facade.session_access import object_namespace, rewrite, session_for
from streamspace_facade.sessions import caller_view
from streamspace_facade.state import Fields, audit, json_body, principal, services

Change = Callable[[Mapping[str, Any]], dict[str, Any]]
"""From a Session's spec, the spec fields to merge into it (raises ApiError to refuse)."""


def _user_field(fields: Fields) -> str:
    user: str = fields.get("user", str, required=True, check=_dns_label)
    return user


def _dns_label(value: str) -> str | None:
    return None if is_dns_label(value) else "must be a DNS label"


def shares_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    return {
        "sessionId": obj["metadata"]["name"],
        "owner": sharing.owner_of(spec),
        "shares": sharing.shared_with(spec, "", None),
    }


async def _change(
    request: web.Request, name: str, change: Change, *, need: str = sharing.OWNER
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """Apply ``change`` to session ``name`` (the caller needs ``need`` access to it), end the
    connections of whoever lost control; the Session before and after, the connections ended."""
    svc = services(request)

    def build(before: dict[str, Any]) -> dict[str, Any]:
        spec = change(before.get("spec") or {})
        metadata: dict[str, Any] = {"resourceVersion": before["metadata"]["resourceVersion"]}
        if "user" in spec:
            metadata["labels"] = {"stream.space/user": spec["user"]}
        return {"metadata": metadata, "spec": spec}

    before, after = await rewrite(request, name, need, build)
    if svc.live is not None:
        svc.live.informer.observed(after)
    await svc.mirror.observed(SESSIONS, after)
    lost = sharing.lost_control(before.get("spec") or {}, after.get("spec") or {})
    ended = await _end_connections(request, after, lost) if lost else []
    return before, after, ended


async def _end_connections(
    request: web.Request, session: Mapping[str, Any], users: set[str]
) -> list[str]:
    """Delete the Connections of ``users`` to ``session`` (a client's next heartbeat gets 404);
    their names."""
    svc = services(request)
    name, namespace = session["metadata"]["name"], object_namespace(session)
    items, _ = await svc.kube.list(
        "Connection", namespace, label_selector=f"stream.space/session={label_value(name)}"
    )
    ended: list[str] = []
    for conn in items:
        spec = conn.get("spec") or {}
        if spec.get("session") != name or spec.get("user") not in users:
            continue
        ended.append(conn["metadata"]["name"])
        try:
            await svc.kube.delete("Connection", namespace, conn["metadata"]["name"])
        except ApiError as exc:
            if exc.status != 404:
                raise
        await svc.mirror.forget(CONNECTIONS, conn["metadata"]["uid"])
    return sorted(ended)


async def list_shares(request: web.Request) -> web.Response:
    obj = await session_for(request, request.match_info["id"], sharing.VIEW)
    return json_response(shares_view(obj))


async def share(request: web.Request) -> web.Response:
    """Add a share or change its access (owner, operators, admins)."""
    name = request.match_info["id"]
    fields = Fields(await json_body(request), {"user", "access"})
    user = _user_field(fields)
    access = fields.get(
        "access",
        str,
        required=True,
        check=lambda a: None if a in sharing.SHARED else "must be view or control",
    )
    fields.done()

    def add(spec: Mapping[str, Any]) -> dict[str, Any]:
        if user == sharing.owner_of(spec):
            raise invalid({"user": "the owner has full access already"})
        if user not in sharing.shares(spec) and len(sharing.shares(spec)) >= sharing.MAX_SHARES:
            raise invalid({"user": f"a session is shared with at most {sharing.MAX_SHARES} users"})
        return {"sharedWith": sharing.shared_with(spec, user, access)}

    _, after, ended = await _change(request, name, add)
    changes = {"user": user, "access": access}
    audit(request, "share", "session", name, {**changes, "endedConnections": ended})
    return json_response(shares_view(after))


async def revoke(request: web.Request) -> web.Response:
    """Remove a user's share: their connections end and the gate refuses them at once."""
    name, user = request.match_info["id"], request.match_info["user"]

    def remove(spec: Mapping[str, Any]) -> dict[str, Any]:
        if user not in sharing.shares(spec):
            raise not_found("share", user)
        return {"sharedWith": sharing.shared_with(spec, user, None)}

    _, _, ended = await _change(request, name, remove)
    audit(request, "revoke", "session", name, {"user": user, "endedConnections": ended})
    return web.Response(status=204)


async def transfer(request: web.Request) -> web.Response:
    """Hand a hibernated (or terminated) session to another user: admins only (decision 177)."""
    name = request.match_info["id"]
    who = principal(request)
    fields = Fields(await json_body(request), {"user"})
    user = _user_field(fields)
    fields.done()
    if not who.at_least("admin"):
        await session_for(request, name, sharing.VIEW)  # 404 for a session they cannot see
        raise forbidden("only admins transfer a session to another user")

    def hand_over(spec: Mapping[str, Any]) -> dict[str, Any]:
        state = spec.get("state", "running")
        if state not in ("hibernated", "terminated"):
            raise conflict(
                f"session {name!r} is {state}: hibernate it first, so that no pod runs with "
                "its owner's home while it changes hands"
            )
        return {"user": user, "sharedWith": sharing.shared_with(spec, user, None)}

    before, after, ended = await _change(request, name, hand_over)
    previous = sharing.owner_of(before.get("spec") or {})
    changes = {"from": previous, "to": user, "endedConnections": ended}
    audit(request, "transfer", "session", name, changes)
    return json_response(caller_view(who, after))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/sessions/{id}/shares", list_shares)
    router.add_post("/api/v1/sessions/{id}/shares", share)
    router.add_delete("/api/v1/sessions/{id}/shares/{user}", revoke)
    router.add_post("/api/v1/sessions/{id}/transfer", transfer)
