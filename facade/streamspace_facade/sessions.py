"""Session routes: they write Session CRs; lists read the mirror.

A user sees their own sessions and those shared with them, and changes their own only;
anyone else's answer 404, exactly as a missing one does, so ids cannot be probed
(``session_access``). Operators and admins see every session.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from streamspace import idempotency, sharing
from streamspace.db.mirror import SESSIONS, session_row
from streamspace.decisions import USER, next_decision
from streamspace.lifecycle import revives
from streamspace.naming import is_dns_label, is_object_name, label_value
from streamspace.quotas import as_wanted, wants_running
from streamspace.schedules import schedule_problems
from streamspace.templates import normalize_resources
from streamspace_facade import paging, quotas
from streamspace_facade.errors import ApiError, forbidden, invalid
from streamspace_facade.idempotency import IDEMPOTENCY
from streamspace_facade.limits import enforce_caps
from streamspace_facade.principal import Principal
from streamspace_facade.responses import dumps, json_response, raw_json_response
from streamspace_facade.session_access import (
    caller_access,
    object_namespace,
    own_session,
    rewrite,
    session_for,
)
from streamspace_facade.state import (
    Fields,
    Services,
    audit,
    duration_problem,
    iso,
    json_body,
    principal,
    services,
)

STATES = ("running", "hibernated", "terminated")
TEMPLATE_SEEN_FOR = 10.0
"""Seconds a create trusts that a Template it found exists (decision 152): a burst of creates
of one template reads it once, not once per session. A Template deleted meanwhile is what the
operator already meets when one goes between the check and the reconcile."""
TAG_PATTERN = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"


def session_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The API's camelCase session, from a mirror row (or a row made from a fresh CR)."""
    return {
        "id": row["id"],
        "name": row["id"],
        "namespace": row["namespace"],
        "user": row["user_id"],
        "template": row["template_name"],
        "state": row["state"],
        "phase": row["phase"] or "Pending",
        "status": row["phase"] or "Pending",
        "url": row["url"],
        "podName": row["pod_name"],
        "activeConnections": row["active_connections"],
        "resources": row["resources"] or {},
        "persistentHome": row["persistent_home"],
        "idleTimeout": row["idle_timeout"],
        "maxSessionDuration": row["max_session_duration"],
        "tags": list(row["tags"] or []),
        "sharedWith": list(row["shared_with"] or []),
        "lastActivity": iso(row["last_activity"]),
        "idleDeadline": iso(row["idle_deadline"]),
        "startedAt": iso(row["started_at"]),
        "hibernatedAt": iso(row["hibernated_at"]),
        "schedule": row["schedule"],
        "nextStart": iso(row["next_start"]),
        "nextStop": iso(row["next_stop"]),
        "createdAt": iso(row["created_at"]),
    }


def caller_view(who: Principal, obj: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh CR's view for ``who``, with their ``access`` to it."""
    return {**session_view(session_row(obj)), "access": caller_access(who, obj.get("spec") or {})}


def _tags_problem(value: list[Any]) -> str | None:
    if len(value) > 32:
        return "at most 32 tags"
    for tag in value:
        if not isinstance(tag, str) or not re.match(TAG_PATTERN, tag) or len(tag) > 63:
            return f"tag {tag!r} must be 1-63 letters, digits, '-', '_' or '.'"
    return None


def _resources(fields: Fields) -> dict[str, Any] | None:
    raw = fields.get("resources", dict)
    if raw is None:
        return None
    allowed = {"cpu", "memory", "requests", "limits"}
    unknown = set(raw) - allowed
    if unknown:
        fields.fail(
            "resources", f"unknown keys {sorted(unknown)}; use cpu/memory or requests/limits"
        )
        return None
    for key in ("cpu", "memory"):
        if key in raw and not isinstance(raw[key], str | int | float):
            fields.fail(f"resources.{key}", "must be a quantity like 500m or 2Gi")
    for part in ("requests", "limits"):
        if part in raw and not isinstance(raw[part], dict):
            fields.fail(f"resources.{part}", "must be an object of quantities")
    if fields.errors:
        return None
    return dict(normalize_resources(raw))


SPEC_FIELDS = (
    "persistentHome",
    "idleTimeout",
    "maxSessionDuration",
    "tags",
    "resources",
    "schedule",
)


def _schedule(fields: Fields, spec: dict[str, Any], *, patching: bool) -> None:
    """``schedule`` into ``spec``: checked here (cron and time zone, which no schema can
    check), replacing the whole schedule; on a PATCH, null removes it."""
    if "schedule" not in fields.body:
        return
    raw = fields.body["schedule"]
    if raw is None:
        if patching:
            spec["schedule"] = None
        return
    problems = schedule_problems(raw)
    for path, problem in problems.items():
        fields.fail(path, problem)
    if not problems:
        schedule = {
            "start": raw.get("start"),
            "stop": raw.get("stop"),
            "timeZone": raw.get("timeZone") or "UTC",
        }
        # on a PATCH an absent cron goes as null: the merge patch replaces the schedule
        spec["schedule"] = {k: v for k, v in schedule.items() if patching or v is not None}


def _common_spec(fields: Fields, *, patching: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for key, kind, check in (
        ("persistentHome", bool, None),
        ("idleTimeout", str, duration_problem),
        ("maxSessionDuration", str, duration_problem),
        ("tags", list, _tags_problem),
        ("state", str, lambda s: None if s in STATES else f"must be one of {', '.join(STATES)}"),
    ):
        value = fields.get(key, kind, check=check)
        if value is not None:
            spec[key] = value
    resources = _resources(fields)
    if resources is not None:
        spec["resources"] = resources
    _schedule(fields, spec, patching=patching)
    return spec


def new_session_name(user: str, template: str, suffix: str | None = None) -> str:
    """``<user>-<template>-<8 hex>``, cut to fit an object name; random hex unless given."""
    suffix = suffix or secrets.token_hex(4)
    room = 253 - len(user) - len(suffix) - 2
    return f"{user}-{template[:room].rstrip('.-')}-{suffix}"


async def list_sessions(request: web.Request) -> web.Response:
    svc, who = services(request), principal(request)
    q = request.query
    user = q.get("user") or None
    state = q.get("state") or None
    if state is not None and state not in STATES:
        raise invalid({"query.state": f"must be one of {', '.join(STATES)}"})
    filters = {
        "user": user,
        "state": state,
        "template": q.get("template") or None,
        "tag": q.get("tag") or None,
    }
    win = paging.window(request, "sessions", {**filters, "caller": who.user}, numbered=True)
    # a user lists the sessions they own or that are shared with them (?user= filters by owner)
    viewer = None if who.sees_everything else who.user
    # PostgreSQL renders the JSON of the page (the same shape as session_view)
    found = await svc.db().sessions.list_json(
        namespace=svc.scope,
        **filters,
        viewer=viewer,
        caller=who.user,
        limit=win.limit,
        offset=win.offset if win.after is None else 0,
        after=None if win.after is None else (str(win.after[0]), str(win.after[1])),
    )
    frame = paging.envelope(request, win, "sessions", [], total=found.total, last=found.last)
    del frame["sessions"]
    return raw_json_response(f'{{"sessions":{found.items},{dumps(frame).decode()[1:]}')


async def create_session(request: web.Request) -> web.Response:
    svc, who = services(request), principal(request)
    body = await json_body(request)
    fields = Fields(body, {"user", "template", "state", *SPEC_FIELDS})
    template = fields.get(
        "template",
        str,
        required=True,
        check=lambda t: None if is_object_name(t) else "must be a Template name",
    )
    user = fields.get(
        "user", str, check=lambda u: None if is_dns_label(u) else "must be a DNS label"
    )
    spec = _common_spec(fields)
    fields.done()
    enforce_caps(spec, svc.settings.limits)
    owner = user or who.user
    if owner != who.user and not who.at_least("admin"):
        raise ApiError(403, "FORBIDDEN", "only admins may create sessions for another user")
    await _template_exists(svc, template)
    wanted = {"metadata": {"name": ""}, "spec": {"user": owner, "template": template, **spec}}
    async with quotas.admitting(request, svc.namespace, wanted) as wrote:
        obj = await _create_once(request, owner, template, spec)
        wrote(obj)
    name = obj["metadata"]["name"]
    await svc.mirror.observed(SESSIONS, obj)
    audit(request, "create", "session", name, {"user": owner, "template": template, **spec})
    return json_response(caller_view(who, obj), status=201)


async def _template_exists(svc: Services, template: str) -> None:
    """A 422 unless Template ``template`` exists in the facade's namespace."""
    seen = svc.templates_seen.get(template)
    now = time.monotonic()
    if seen is not None and now - seen < TEMPLATE_SEEN_FOR:
        return
    try:
        await svc.kube.get("Template", svc.namespace, template)
    except ApiError as exc:
        if exc.status == 404:
            svc.templates_seen.pop(template, None)
            raise invalid({"template": f"template {template!r} does not exist"}) from None
        raise
    if len(svc.templates_seen) > 1000:
        svc.templates_seen.clear()
    svc.templates_seen[template] = now


async def _create_once(
    request: web.Request, owner: str, template: str, spec: dict[str, Any]
) -> dict[str, Any]:
    """Create the Session CR. With an ``Idempotency-Key`` its name comes from the key, so a
    retry (even one PostgreSQL could not answer) finds the first request's Session instead of
    making a second one."""
    svc = services(request)
    key = request.get(IDEMPOTENCY)
    metadata: dict[str, Any] = {
        "labels": {"stream.space/user": owner, "stream.space/template": label_value(template)},
    }
    if key is not None:
        metadata["annotations"] = idempotency.object_annotations(key)
    body = {"metadata": metadata, "spec": {"user": owner, "template": template, **spec}}
    if key is not None:
        name = new_session_name(owner, template, key.name_suffix)
        try:
            created: dict[str, Any] = await svc.kube.create(
                "Session", svc.namespace, {**body, "metadata": {**metadata, "name": name}}
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
        else:
            return created
        existing: dict[str, Any] = await svc.kube.get("Session", svc.namespace, name)
        outcome = idempotency.match_object(existing, key)
        if outcome is idempotency.Outcome.REPLAY:
            return existing
        if outcome is idempotency.Outcome.MISMATCH:
            raise invalid({f"header.{idempotency.HEADER}": idempotency.REUSED})
        # a session of another key took the name: this one gets a random name
    name = new_session_name(owner, template)
    created = await svc.kube.create(
        "Session", svc.namespace, {**body, "metadata": {**metadata, "name": name}}
    )
    return created


async def get_session(request: web.Request) -> web.Response:
    obj = await session_for(request, request.match_info["id"], sharing.VIEW)
    return json_response(caller_view(principal(request), obj))


async def patch_session(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["id"]
    body = await json_body(request)
    fields = Fields(body, {"state", *SPEC_FIELDS})
    spec = _common_spec(fields, patching=True)
    fields.done()
    enforce_caps(spec, svc.settings.limits)
    if not spec:
        raise invalid({"body": f"nothing to change; send one of state, {', '.join(SPEC_FIELDS)}"})
    obj = await _patch_spec(request, name, spec)
    await svc.mirror.observed(SESSIONS, obj)
    audit(request, "update", "session", name, spec)
    return json_response(caller_view(principal(request), obj))


async def _patch_spec(request: web.Request, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Merge ``spec`` into session ``name``; only admins revive a terminated session.

    A state change is the user's decision: it is counted (``decisions``, even when the state is
    already so, as it still overrides a connect made before it) and conditioned on the version
    read, so the count is exact and a termination landing in between (maxSessionDuration) is not
    undone by a non-admin: the conflict re-reads and re-checks.
    """
    who = principal(request)
    decides = "state" in spec
    guarded = decides and spec["state"] != "terminated" and not who.at_least("admin")

    def build(session: dict[str, Any]) -> dict[str, Any]:
        if guarded and revives(session.get("spec") or {}, spec):
            raise forbidden(
                f"session {name!r} is terminated: only admins may change its state back; "
                "create a new session instead"
            )
        patch: dict[str, Any] = {"spec": spec}
        if decides:
            patch["metadata"] = {
                "resourceVersion": session["metadata"]["resourceVersion"],
                "annotations": next_decision(session, USER),
            }
        return patch

    async def apply(session: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        return await _patch_within_quota(request, session, patch)

    _, obj = await rewrite(request, name, sharing.OWNER, build, apply)
    return obj


async def _patch_within_quota(
    request: web.Request, session: dict[str, Any], patch: dict[str, Any]
) -> dict[str, Any]:
    """Apply ``patch``; one that wakes the session (state running) only if its quota admits it
    (403 ``QUOTA_EXCEEDED`` otherwise)."""
    kube, ns, name = services(request).kube, object_namespace(session), session["metadata"]["name"]
    if patch["spec"].get("state") != "running" or wants_running(session):
        obj: dict[str, Any] = await kube.patch("Session", ns, name, patch)
        return obj
    wanted = as_wanted({**session, "spec": {**session["spec"], **patch["spec"]}}, "running")
    async with quotas.admitting(request, ns, wanted) as wrote:
        obj = await kube.patch("Session", ns, name, patch)
        wrote(obj)
    return obj


async def delete_session(request: web.Request) -> web.Response:
    svc = services(request)
    name = request.match_info["id"]
    session = await own_session(request, name)
    await svc.kube.delete("Session", object_namespace(session), name)
    quotas.forget(svc, object_namespace(session), name)
    await svc.mirror.forget(SESSIONS, session["metadata"]["uid"])
    audit(request, "delete", "session", name)
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/sessions", list_sessions)
    router.add_post("/api/v1/sessions", create_session)
    router.add_get("/api/v1/sessions/{id}", get_session)
    router.add_patch("/api/v1/sessions/{id}", patch_session)
    router.add_delete("/api/v1/sessions/{id}", delete_session)
