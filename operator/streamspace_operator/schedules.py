"""Scheduled sessions: a Kopf timer per session with a ``spec.schedule`` (decisions 180-182).

Each tick reads the session from the watch cache (no request) and lets ``schedules.decide``
say whether a start or stop is due and what ``nextStart`` / ``nextStop`` are. A due transition
is made as every other state change of the operator is (``connections.change_state``): a
patch of ``spec.state`` conditioned on the resourceVersion read, counted as a decision of
``schedule``, with the fire time recorded in the same write; the session then goes through the
normal lifecycle (a quota holds a scheduled start exactly as it holds any other). A start
wakes only a hibernated session and a stop hibernates only a running one: a terminated session
stays terminated, and whatever a user decides between two fire times stands until the next.
Every event of a scheduled session runs the same check, so a new or changed schedule has its
times (or its ``ScheduleInvalid``) at once. Writes happen only when something changed; a fire
due before the next tick is waited for.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.conditions import merge_conditions, timestamp
from streamspace.config import Settings
from streamspace.decisions import SCHEDULE
from streamspace.lifecycle import Event, status_changed
from streamspace.schedules import (
    FIRED_ANNOTATION,
    INVALID,
    SCHEDULED,
    START,
    ScheduleDecision,
    decide,
    due_within,
)
from streamspace_operator import ratelimit, timers
from streamspace_operator.connections import change_state
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import timed

log = logging.getLogger(__name__)

STATUS_ATTEMPTS = 5  # the status write is conditioned on the copy it was decided from


def scheduled(spec: kopf.Spec, status: kopf.Status, **_: Any) -> bool:
    """Sessions that get the timer: a schedule, or what an earlier one left in the status."""
    conditions = status.get("conditions") or []
    return bool(
        spec.get("schedule")
        or status.get("nextStart")
        or status.get("nextStop")
        or any(c.get("type") == SCHEDULED for c in conditions)
    )


async def schedule_check(*, memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    ctx, ns = context(memo), namespaced(namespace)
    with ratelimit.priority(ratelimit.NORMAL):
        await check(ctx, ns, name)
        session = ctx.cache.session(ns, name)
        interval = ctx.settings.sessions.schedule_check_interval
        now = ctx.clock()
        soon = due_within((session or {}).get("status") or {}, now, interval)
        if soon is not None:
            # due before the next tick: on time rather than up to one interval late
            await asyncio.sleep((soon - now).total_seconds())
            await check(ctx, ns, name)


async def schedule_changed(
    *, memo: kopf.Memo, namespace: str | None, name: str, event: kopf.RawEvent, **_: Any
) -> None:
    """Any event of a scheduled session: a new or changed schedule gets its times (or its
    ``ScheduleInvalid``) at once rather than at the next tick; an unchanged one writes nothing.
    Not retried on failure (an event handler): the timer is the backstop."""
    if event.get("type") == "DELETED":
        return
    ctx, ns = context(memo), namespaced(namespace)
    try:
        await check(ctx, ns, name)
    except Exception as exc:  # the next tick tries again
        log.warning("session %s/%s: schedule check failed: %s", ns, name, exc)


async def check(ctx: Context, ns: str, name: str) -> None:
    """Make the due transition, if any, and record the pending fire times."""
    async with ctx.locks[(ns, name)]:
        session = ctx.cache.session(ns, name)
        for _ in range(STATUS_ATTEMPTS):
            if session is None or session["metadata"].get("deletionTimestamp"):
                return
            decision = _decide(ctx, session)
            if decision.transition is not None and decision.fired_at is not None:
                await _transition(ctx, ns, session, decision.transition, decision.fired_at)
                session = ctx.cache.session(ns, name) or session
                decision = _decide(ctx, session)
            try:
                await _write_status(ctx, ns, session, decision)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                session = await ctx.api.get_custom("Session", ns, name)
                if session is not None:
                    ctx.cache.remember("Session", session)
            else:
                return
        raise kopf.TemporaryError(f"schedule of {ns}/{name}: status conflicts on every attempt")


def _decide(ctx: Context, session: dict[str, Any]) -> ScheduleDecision:
    fired = ((session.get("metadata") or {}).get("annotations") or {}).get(FIRED_ANNOTATION)
    return decide(session.get("spec") or {}, session.get("status") or {}, ctx.clock(), fired)


async def _transition(
    ctx: Context, ns: str, session: dict[str, Any], kind: str, fired_at: datetime
) -> None:
    wanted, state = ("hibernated", "running") if kind == START else ("running", "hibernated")
    fired = f"{kind}:{timestamp(fired_at)}"
    name = session["metadata"]["name"]
    made = await change_state(
        ctx,
        ns,
        session,
        still_wanted=lambda s: (s.get("spec") or {}).get("state", "running") == wanted,
        state=state,
        cause=SCHEDULE.capitalize(),
        annotations={FIRED_ANNOTATION: fired},
    )
    if not made:
        # already so (or terminated): nothing to do; the fire time passes
        log.info("session %s/%s: scheduled %s at %s: nothing to change", ns, name, kind, fired)
        return
    reason = "ScheduledStart" if kind == START else "ScheduledStop"
    message = f"scheduled {kind} at {timestamp(fired_at)}: spec.state set to {state}"
    await ctx.api.post_event(session, Event("Normal", reason, message))
    log.info("session %s/%s: %s", ns, name, message)


async def _write_status(
    ctx: Context, ns: str, session: dict[str, Any], decision: ScheduleDecision
) -> None:
    status = session.get("status") or {}
    meta = session["metadata"]
    existing = status.get("conditions") or []
    if decision.condition is None:
        conditions = [c for c in existing if c.get("type") != SCHEDULED]
    else:
        generation = int(meta.get("generation") or 0)
        conditions = merge_conditions(existing, [decision.condition], generation, ctx.clock())
    wanted = {**decision.status, "conditions": conditions}
    if not status_changed(status, wanted):
        return
    written = await ctx.api.patch_status(
        "Session", ns, meta["name"], wanted, resource_version=meta.get("resourceVersion")
    )
    if written is not None:
        ctx.cache.remember("Session", written)
    condition = decision.condition
    before: dict[str, Any] = next((c for c in existing if c.get("type") == SCHEDULED), {})
    if (
        condition is not None
        and condition.reason == INVALID
        and (before.get("reason"), before.get("message")) != (INVALID, condition.message)
    ):
        await ctx.api.post_event(session, Event("Warning", INVALID, condition.message))


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    sessions = (API_GROUP, API_VERSION, "sessions")
    interval = settings.sessions.schedule_check_interval.total_seconds()
    timers.timer(registry, sessions, id="schedule_check", interval=interval, when=scheduled)(
        timed("Session")(schedule_check)
    )
    kopf.on.event(*sessions, registry=registry, id="schedule_changed", when=scheduled)(
        timed("Session", "schedule_changed")(schedule_changed)
    )
