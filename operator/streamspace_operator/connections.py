"""Connections, auto-start and auto-hibernation: the operator is the single owner of both.

* A new Connection is adopted by its Session (owner reference, ``connectedAt``, ``active``); one
  to a missing or terminated session is rejected (status says why) and deleted.
* A Connection to a hibernated session wakes it: ``spec.state`` becomes ``running`` through a
  patch conditioned on the resourceVersion just read, under the session's lock, so concurrent
  connects wake it exactly once; a user's decision made after the connect stands
  (``decisions.connect_wakes``). ``connectedAt`` is written after the wake: once it is set,
  the connection's wake is decided.
* Per session, two Kopf timers read the connections from a Kopf index (no list calls per tick):
  ``stale_check`` marks connections without heartbeats stale and deletes them; ``idle_check``
  keeps ``activeConnections``, ``lastActivity`` and ``idleDeadline`` current, warns, and
  hibernates idle sessions, again conditioned on a fresh resourceVersion so that a user's state
  change racing the timer wins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.conditions import parse_timestamp, timestamp
from streamspace.config import Settings
from streamspace.decisions import connect_wakes, next_decision
from streamspace.durations import parse_duration
from streamspace.idle import ConnectionView, IdleDecision, IdleInput, evaluate
from streamspace.lifecycle import CAUSE_ANNOTATION, Event
from streamspace.ownership import NAME_CONFLICT, controller_uid
from streamspace_operator import ratelimit, timers
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import timed

log = logging.getLogger(__name__)

INDEX = "connections_by_session"
# A state change conditioned on the resourceVersion conflicts with every status write made
# since its read (activity, phase); each attempt reads again, so a few more are cheap.
STATE_CHANGE_ATTEMPTS = 20


def _now() -> datetime:
    return datetime.now(UTC)


async def connections_by_session(
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    meta: kopf.Meta,
    **_: Any,
) -> dict[tuple[str, str], ConnectionView]:
    last_seen = (
        parse_timestamp(status.get("lastHeartbeat"))
        or parse_timestamp(status.get("connectedAt"))
        or parse_timestamp(meta.get("creationTimestamp"))
    )
    view = ConnectionView(
        name,
        str(status.get("state") or "active"),
        last_seen,
        uid=str(meta.get("uid") or ""),
        owner=controller_uid({"metadata": dict(meta)}),
    )
    return {(namespaced(namespace), str(spec.get("session", ""))): view}


def _idle_input(
    ctx: Context,
    body: kopf.Body | dict[str, Any],
    connections: Iterable[ConnectionView],
    activity: datetime | None = None,
) -> IdleInput:
    spec, status = body.get("spec") or {}, body.get("status") or {}
    sessions = ctx.settings.sessions
    return IdleInput(
        state=str(spec.get("state", "running")),
        phase=status.get("phase"),
        idle_timeout=parse_duration(str(spec.get("idleTimeout", "30m"))),
        last_activity=max(
            (t for t in (parse_timestamp(status.get("lastActivity")), activity) if t),
            default=None,
        ),
        started_at=parse_timestamp(status.get("startedAt")),
        connections=tuple(connections),
        now=_now(),
        stale_after=sessions.stale_after,
        hibernate_warning=sessions.hibernate_warning,
    )


def _activity_status(
    decision: IdleDecision, current: dict[str, Any], *, force: bool = False
) -> dict[str, Any]:
    """The status fields this module owns, only where they change."""
    wanted: dict[str, Any] = {
        "activeConnections": decision.active,
        "idleDeadline": timestamp(decision.idle_deadline) if decision.idle_deadline else None,
    }
    if (force or decision.write_last_activity) and decision.last_activity is not None:
        wanted["lastActivity"] = timestamp(decision.last_activity)
    return {k: v for k, v in wanted.items() if current.get(k) != v}


# -- connection events -------------------------------------------------------------------------


async def connection_event(
    *,
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    event: kopf.RawEvent,
    **kwargs: Any,
) -> None:
    ctx = context(memo)
    ns = namespaced(namespace)
    session = str((body.get("spec") or {}).get("session", ""))
    index: kopf.Index[tuple[str, str], ConnectionView] = kwargs[INDEX]
    if event.get("type") == "DELETED":
        await record_activity(ctx, ns, session, index, _now())  # a disconnect is activity
        return
    status = body.get("status") or {}
    if status.get("connectedAt") or status.get("state") in ("rejected", "stale"):
        return  # adopted (heartbeats only move the index) or already on its way out
    # A user is waiting for this one: its requests go before any hibernation's (decision 136).
    with ratelimit.priority(ratelimit.HIGH):
        await adopt(ctx, ns, name, session_name=session, body=body, index=index)


async def _session(
    ctx: Context, ns: str, name: str, *, fresh: bool = False
) -> dict[str, Any] | None:
    """The Session from the cache, or read when ``fresh`` or when the cache has none (its event
    may not have arrived yet: a client creates the session and at once a connection to it)."""
    cached = None if fresh else ctx.cache.session(ns, name)
    return cached if cached is not None else await ctx.api.get_custom("Session", ns, name)


async def adopt(
    ctx: Context,
    ns: str,
    name: str,
    *,
    session_name: str,
    body: kopf.Body,
    index: kopf.Index[tuple[str, str], ConnectionView],
) -> None:
    kube = ctx.api
    now = _now()
    async with ctx.locks[(ns, session_name)]:
        current: dict[str, Any] | None = dict(body)  # as the event brought it
        for attempt in range(STATE_CHANGE_ATTEMPTS):
            if attempt:  # a conflict: read both again
                current = await kube.get_custom("Connection", ns, name)
            if current is None or (current.get("status") or {}).get("connectedAt"):
                return  # gone, or adopted by an earlier event of the same connection
            session = await _session(ctx, ns, session_name, fresh=attempt > 0)
            if _refusable(current, session):  # refusing: only on what the API server says
                session = await _session(ctx, ns, session_name, fresh=True)
            if not await _admissible(ctx, ns, current, session, body) or session is None:
                return
            if await _claim(ctx, ns, current, session["metadata"]):
                break
        else:
            return
        # Before connectedAt: a connection adopted has had its wake decided (a crash in between
        # leaves it unadopted, and its next event decides again, on the session as it is then).
        await _wake(ctx, ns, session, current)
        heartbeat = (current.get("status") or {}).get("lastHeartbeat") or timestamp(now)
        await kube.patch_status(
            "Connection",
            ns,
            name,
            {
                "connectedAt": timestamp(now),
                "lastHeartbeat": heartbeat,
                "state": "active",
            },
        )
    await record_activity(ctx, ns, session_name, index, now)


def _refusable(connection: dict[str, Any], session: dict[str, Any] | None) -> bool:
    """Whether ``_admissible`` would turn the connection away on this (cached) session."""
    state = (session or {}).get("spec", {}).get("state")
    controller = controller_uid(connection)
    uid = (session or {}).get("metadata", {}).get("uid")
    return session is None or state == "terminated" or controller not in (None, uid)


async def _admissible(
    ctx: Context,
    ns: str,
    current: dict[str, Any],
    session: dict[str, Any] | None,
    body: kopf.Body,
) -> bool:
    """Whether the Connection may join ``session``; if not, say why (and reject it if it is
    ours to reject)."""
    kube, name = ctx.api, current["metadata"]["name"]
    session_name = str(current["spec"].get("session", ""))
    controller = controller_uid(current)
    if controller is not None and controller != (session or {}).get("metadata", {}).get("uid"):
        # Controlled by something else (an earlier session of this name, another tool): not
        # ours to adopt, reject, count or delete.
        message = f"controlled by {controller}, not by session {session_name!r}"
        await kube.post_event(dict(body), Event("Warning", NAME_CONFLICT, message))
        return False
    state = (session or {}).get("spec", {}).get("state")
    if session is None or state == "terminated" or session["metadata"].get("deletionTimestamp"):
        reason = "not found" if session is None else "terminated"
        rejected = {"state": "rejected", "message": f"session {session_name!r} is {reason}"}
        await kube.patch_status("Connection", ns, name, rejected)
        await kube.post_event(dict(body), Event("Warning", "Rejected", f"session {reason}"))
        await kube.delete_custom("Connection", ns, name, uid=current["metadata"]["uid"])
        return False
    return True


async def _claim(
    ctx: Context, ns: str, current: dict[str, Any], session_meta: dict[str, Any]
) -> bool:
    """Add the Session as the Connection's controller, conditioned on the version read (owner
    references changed meanwhile are not overwritten); False on a conflict."""
    owner = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "Session",
        "name": session_meta["name"],
        "uid": session_meta["uid"],
        "blockOwnerDeletion": True,
    }
    meta = current["metadata"]
    refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != session_meta["uid"]]
    adoption = {
        "metadata": {"resourceVersion": meta["resourceVersion"], "ownerReferences": [*refs, owner]}
    }
    try:
        await ctx.api.patch_custom("Connection", ns, meta["name"], adoption)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return False
    return True


async def _wake(ctx: Context, ns: str, session: dict[str, Any], connection: dict[str, Any]) -> None:
    """hibernated → running, if this connection still wakes the session; decided again on the
    session read after each conflict, so a user's hibernate landing meanwhile stands."""
    name = session["metadata"]["name"]
    patched = await change_state(
        ctx,
        ns,
        session,
        still_wanted=lambda s: connect_wakes(s, connection),
        state="running",
        cause="Connect",
    )
    if patched:
        log.info("session %s woken by a connection", name)


async def change_state(
    ctx: Context,
    ns: str,
    session: dict[str, Any] | None,
    *,
    still_wanted: Callable[[dict[str, Any]], bool],
    state: str,
    cause: str,
    annotations: dict[str, str] | None = None,
) -> bool:
    """Set ``spec.state`` conditioned on the resourceVersion read, counting the decision
    (``decisions``); on a conflict read again and retry only while ``still_wanted`` holds. A
    user's change in between therefore always wins. Raises when conflicts never end.
    ``annotations`` are written in the same patch (a scheduled transition's fire time)."""
    for _ in range(STATE_CHANGE_ATTEMPTS):
        if session is None or not still_wanted(session):
            return False
        meta = session["metadata"]
        written = {
            CAUSE_ANNOTATION: f"{state}:{cause}",
            **next_decision(session, cause.lower()),  # who: "idle", "connect" or "schedule"
            **(annotations or {}),
        }
        patch = {
            "metadata": {"resourceVersion": meta["resourceVersion"], "annotations": written},
            "spec": {"state": state},
        }
        try:
            ctx.cache.remember(
                "Session", await ctx.api.patch_custom("Session", ns, meta["name"], patch)
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            session = await ctx.api.get_custom("Session", ns, meta["name"])
            continue
        return True
    raise kopf.TemporaryError(
        f"{state} ({cause}): conflicts on every one of {STATE_CHANGE_ATTEMPTS} attempts"
    )


async def record_activity(
    ctx: Context,
    ns: str,
    session_name: str,
    index: kopf.Index[tuple[str, str], ConnectionView],
    moment: datetime,
) -> None:
    """A connect or disconnect: written at once (they restart the idle clock)."""
    session = await _session(ctx, ns, session_name)
    if session is None:
        return
    uid = str(session["metadata"].get("uid", ""))
    connections: Iterable[ConnectionView] = _connections_of(index, ns, session_name, uid)
    decision = evaluate(_idle_input(ctx, session, connections, activity=moment))
    changes = _activity_status(decision, session.get("status") or {}, force=True)
    if changes:
        ctx.cache.remember(
            "Session", await ctx.api.patch_status("Session", ns, session_name, changes)
        )


# -- timers ------------------------------------------------------------------------------------


def _evaluate_timer(
    memo: kopf.Memo, namespace: str | None, name: str, body: kopf.Body, kwargs: dict[str, Any]
) -> tuple[Context, str, kopf.Index[tuple[str, str], ConnectionView], IdleDecision]:
    """What both per-session timers start from: the session's connections, evaluated."""
    ctx = context(memo)
    ns = namespaced(namespace)
    index: kopf.Index[tuple[str, str], ConnectionView] = kwargs[INDEX]
    connections = _connections_of(index, ns, name, str(body.get("metadata", {}).get("uid", "")))
    return ctx, ns, index, evaluate(_idle_input(ctx, body, connections))


def _connections_of(
    index: kopf.Index[tuple[str, str], ConnectionView], ns: str, name: str, session_uid: str
) -> list[ConnectionView]:
    """The session's connections: those naming it, unless another Session controls them."""
    return [c for c in index.get((ns, name), []) if c.of_session(session_uid)]


async def stale_check(
    *, memo: kopf.Memo, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    with ratelimit.priority(ratelimit.LOW):
        await _stale_check(memo, namespace, name, body, kwargs)


async def _stale_check(
    memo: kopf.Memo, namespace: str | None, name: str, body: kopf.Body, kwargs: dict[str, Any]
) -> None:
    ctx, ns, index, decision = _evaluate_timer(memo, namespace, name, body, kwargs)
    uids = {c.name: c.uid for c in index.get((ns, name), [])}
    for connection in decision.stale:
        quiet = ctx.settings.sessions.stale_after.total_seconds()
        stale = {"state": "stale", "message": f"no heartbeat for {quiet:.0f}s"}
        await ctx.api.patch_status("Connection", ns, connection, stale)
        await ctx.api.delete_custom("Connection", ns, connection, uid=uids.get(connection))
        log.info("connection %s of session %s was stale and is deleted", connection, name)


async def idle_check(
    *, memo: kopf.Memo, namespace: str | None, name: str, body: kopf.Body, **kwargs: Any
) -> None:
    """Idle bookkeeping and hibernation: bulk work, queued behind any start or wake."""
    with ratelimit.priority(ratelimit.LOW):
        await _idle_check(memo, namespace, name, body, kwargs)


async def _idle_check(
    memo: kopf.Memo, namespace: str | None, name: str, body: kopf.Body, kwargs: dict[str, Any]
) -> None:
    ctx, ns, index, decision = _evaluate_timer(memo, namespace, name, body, kwargs)
    changes = _activity_status(decision, dict(body.get("status") or {}))
    if changes:
        ctx.cache.remember("Session", await ctx.api.patch_status("Session", ns, name, changes))
    deadline = decision.idle_deadline
    if decision.warn and deadline is not None and ctx.warned.get((ns, name)) != deadline:
        ctx.warned[(ns, name)] = deadline
        message = f"idle: hibernates at {timestamp(deadline)} unless someone connects"
        await ctx.api.post_event(dict(body), Event("Normal", "IdleWarning", message))
    if decision.hibernate:
        await _hibernate_if_still_idle(ctx, ns, name, index)
    elif deadline is not None and deadline - _now() <= ctx.idle_interval:
        # Due before the next tick: wait for the deadline itself rather than a tick after it.
        await asyncio.sleep(max(0.0, (deadline - _now()).total_seconds()))
        await _hibernate_if_still_idle(ctx, ns, name, index)


async def _hibernate_if_still_idle(
    ctx: Context, ns: str, name: str, index: kopf.Index[tuple[str, str], ConnectionView]
) -> None:
    def still_idle(session: dict[str, Any]) -> bool:
        connections = _connections_of(index, ns, name, str(session["metadata"].get("uid", "")))
        return evaluate(_idle_input(ctx, session, connections)).hibernate

    async with ctx.locks[(ns, name)]:
        # From the cache: the change is conditioned on its resourceVersion, and a conflict
        # reads the session again.
        session = await _session(ctx, ns, name)
        if await change_state(
            ctx, ns, session, still_wanted=still_idle, state="hibernated", cause="Idle"
        ):
            ctx.warned.pop((ns, name), None)
            log.info("session %s idle: hibernating", name)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    kopf.index(API_GROUP, API_VERSION, "connections", registry=registry, id=INDEX)(
        connections_by_session
    )
    kopf.on.event(API_GROUP, API_VERSION, "connections", registry=registry)(
        timed("Connection")(connection_event)
    )
    sessions = (API_GROUP, API_VERSION, "sessions")
    heartbeat = settings.sessions.heartbeat_check_interval.total_seconds()
    idle = settings.sessions.idle_check_interval.total_seconds()
    timers.timer(registry, sessions, id="stale_check", interval=heartbeat)(
        timed("Session")(stale_check)
    )
    timers.timer(registry, sessions, id="idle_check", interval=idle)(timed("Session")(idle_check))
