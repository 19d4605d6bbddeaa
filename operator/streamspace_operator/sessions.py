"""Session reconciliation: gather the inputs, let ``lifecycle.decide`` choose, apply the plan.

One idempotent reconcile, triggered by every event of the Session (the initial listing too), by
a drift timer (``RECONCILE_INTERVAL``), by events of its children and Pods, and by changes of
its Template (see ``templates``). A lock per session keeps those triggers from interleaving.
The inputs come from the watches (``cache``); only a refused write makes it read with GETs.
Writes go out only where the decision differs from what is there: children that are missing
(or a Deployment to scale), a status that changed, Events of a transition.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace.lifecycle import (
    CAUSE_ANNOTATION,
    READY,
    Observed,
    Plan,
    SessionInput,
    decide,
    pods_from,
    status_changed,
)
from streamspace.manifests import MANAGED_BY, SESSION_ANNOTATION, selector
from streamspace.naming import workload_name
from streamspace.ownership import NAME_CONFLICT
from streamspace_operator import cache, quotas, ratelimit, timers
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import RECONCILE_ERRORS, timed, transitioned

log = logging.getLogger(__name__)

RETRY_BACKOFF = 5.0  # a failed reconcile (API hiccup, conflict) is retried this much later


async def observe(ctx: Context, session: SessionInput) -> Observed:
    """Whatever carries the children's names; ``Observed.of`` tells ours from anyone else's."""
    kube = ctx.api
    name = workload_name(session.name)
    ns = session.namespace
    kinds = ["NetworkPolicy", "Deployment", "Service"]
    if ctx.settings.sessions.ingress_domain:
        kinds.append("Ingress")
    found = {kind: await kube.get_child(kind, ns, name) for kind in kinds}
    pods = await kube.list_pods(ns, selector(session.ref))
    return Observed.of(session.uid, found, pods_from(pods))


STALE = (404, 409, 422)  # a child write refused: it is not (or no longer) as the cache says


def urgency(session: SessionInput) -> int:
    """The queue a session's requests wait in: a start or wake has a user waiting; stopping
    (hibernate, terminate) and checks of a settled session have not."""
    state = session.spec.get("state", "running")
    if state == "running":
        return ratelimit.HIGH if session.status.get("phase") != "Running" else ratelimit.NORMAL
    return ratelimit.LOW


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    """Decide from the cache (no reads), write only what the decision changes.

    The status is written only over the Session the decision was made from (its
    resourceVersion is the write's precondition), and the decision's Events are posted only
    after that write. A copy older than the API server's (a standby's index from before it was
    paused, or a write of someone else's the watch has not brought yet) gets 409: the Session
    is read again and the decision made once more from it, so a transition already reported
    (``Started``, ``Woken``...) is never reported twice."""
    async with ctx.locks[(namespace, name)]:
        try:
            await _reconcile(ctx, namespace, name)
        except StatusConflict:
            log.debug(
                "session %s/%s: changed since the cached copy, reading again", namespace, name
            )
            ctx.cache.remember("Session", await ctx.api.get_custom("Session", namespace, name))
            await _reconcile(ctx, namespace, name)


class StatusConflict(Exception):
    """The Session changed since the copy a decision was made from (409 on its status)."""


async def _reconcile(ctx: Context, namespace: str, name: str) -> None:
    body = ctx.cache.session(namespace, name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return  # children go with it through their owner references
    session = SessionInput.from_body(body)
    with ratelimit.priority(urgency(session)):
        template = ctx.cache.template(namespace, session.ref.template)
        now = datetime.now(UTC)
        ingress = bool(ctx.settings.sessions.ingress_domain)
        if _in_conflict(session):
            # Seen by GETs only (someone else's objects carry no label of ours): whether
            # the names are free yet, GETs tell too.
            observed = await observe(ctx, session)
        else:
            observed = ctx.cache.observe(session, ingress=ingress)
        hold = await quotas.hold(ctx, body)
        plan = decide(session, template, observed, now, ctx.workload_options, hold=hold)
        if await _names_taken(ctx, session, plan, observed):
            observed = await observe(ctx, session)
            plan = decide(session, template, observed, now, ctx.workload_options, hold=hold)
        try:
            await _write_children(ctx, plan, namespace, name)
        except ApiException as exc:
            if exc.status not in STALE:
                raise
            # The cache was behind (or an object of someone else's holds a name, which no
            # watch of ours shows): look with GETs and decide again.
            log.debug(
                "session %s/%s: %s on a child write, reading again", namespace, name, exc.status
            )
            observed = await observe(ctx, session)
            plan = decide(session, template, observed, now, ctx.workload_options, hold=hold)
            await _write_children(ctx, plan, namespace, name)
        await _report(ctx, body, session, plan)


def _in_conflict(session: SessionInput) -> bool:
    conditions = session.status.get("conditions") or []
    return any(c.get("type") == READY and c.get("reason") == NAME_CONFLICT for c in conditions)


async def _names_taken(ctx: Context, session: SessionInput, plan: Plan, observed: Observed) -> bool:
    """Before children are created: whether anything holds their names already. Our watches
    show only objects with our label, so someone else's object there is seen by a GET only
    (one per child to create, at once); an object of ours the watch has not brought yet is
    found the same way."""
    kinds = [m["kind"] for m in plan.apply if m["kind"] not in observed.uids]
    if not kinds:
        return False
    name = workload_name(session.name)
    found = await asyncio.gather(
        *(ctx.api.get_child(kind, session.namespace, name) for kind in kinds)
    )
    return any(obj is not None for obj in found)


async def _write_children(ctx: Context, plan: Plan, namespace: str, name: str) -> None:
    kube, kept = ctx.api, ctx.cache
    if plan.ensure_home is not None and await kube.create_if_absent(plan.ensure_home):
        log.info("created home volume %s", plan.ensure_home["metadata"]["name"])
    for manifest in plan.apply:  # an existing child's manifest carries its uid (a precondition)
        kept.remember(manifest["kind"], await kube.apply(manifest))
    if plan.scale_to is not None:
        scaled = await kube.scale(namespace, workload_name(name), plan.scale_to, uid=plan.scale_uid)
        kept.remember("Deployment", scaled)
    for kind, child, uid in plan.delete:
        await kube.delete(kind, namespace, child, uid=uid)


async def _report(ctx: Context, body: dict[str, Any], session: SessionInput, plan: Plan) -> None:
    kube, kept = ctx.api, ctx.cache
    namespace, name = session.namespace, session.name
    if status_changed(session.status, plan.status):
        try:
            written = await kube.patch_status(
                "Session",
                namespace,
                name,
                plan.status,
                resource_version=body["metadata"].get("resourceVersion"),
            )
        except ApiException as exc:
            if exc.status == 409:
                raise StatusConflict from exc
            raise
        kept.remember("Session", written)
    for event in plan.events:
        await kube.post_event(body, event)
        transitioned(event.reason, session)
    if plan.spec_patch:
        patched = await kube.patch_custom("Session", namespace, name, {"spec": plan.spec_patch})
        kept.remember("Session", patched)
    if plan.clear_cause:
        annotations = {CAUSE_ANNOTATION: None}
        patched = await kube.patch_custom(
            "Session", namespace, name, {"metadata": {"annotations": annotations}}
        )
        kept.remember("Session", patched)


async def reconcile_or_retry(ctx: Context, namespace: str, name: str) -> None:
    """``reconcile`` for event handlers: Kopf does not retry those, so a failure (an API
    hiccup) is logged and the session reconciled again ``RETRY_BACKOFF`` later (once, however
    many failures); the drift timer is the backstop."""
    try:
        await reconcile(ctx, namespace, name)
    except Exception as exc:
        RECONCILE_ERRORS.labels("Session", "reconcile").inc()
        log.warning(
            "session %s/%s: reconcile failed, again in %.0fs: %s",
            namespace,
            name,
            RETRY_BACKOFF,
            exc,
        )
        key = (namespace, name)
        if key not in ctx.retries:
            ctx.retries[key] = asyncio.create_task(_later(ctx, namespace, name))


async def _later(ctx: Context, namespace: str, name: str) -> None:
    await asyncio.sleep(RETRY_BACKOFF)
    ctx.retries.pop((namespace, name), None)
    await reconcile_or_retry(ctx, namespace, name)


async def session_changed(
    memo: kopf.Memo,
    namespace: str | None,
    name: str,
    event: kopf.RawEvent,
    spec: kopf.Spec,
    **_: Any,
) -> None:
    """Any event of a Session (the initial listing too): Kopf keeps no state of its own for
    this (no annotations); an unchanged session costs no request (decision 134). Sessions of
    the same user that their quota holds are looked at again: this one may have made room."""
    ctx, ns = context(memo), namespaced(namespace)
    if event.get("type") == "DELETED":
        ctx.cache.forget("Session", ns, name)
        ctx.warned.pop((ns, name), None)
    else:
        await reconcile_or_retry(ctx, ns, name)
    if quotas.quotas_in(ctx, ns):  # held sessions with no quota left were let go when it went
        await release(ctx, ns, str(spec.get("user", "")), but=name)


async def release(ctx: Context, namespace: str, user: str | None, but: str = "") -> None:
    """Reconcile the held sessions (of ``user``, or all) in ``namespace``, oldest first: the
    admission order starts the ones that fit now (decision 170)."""
    for name in quotas.waiting(ctx, namespace, user):
        if name != but:
            await reconcile_or_retry(ctx, namespace, name)


async def quota_changed(memo: kopf.Memo, namespace: str | None, **_: Any) -> None:
    """A SessionQuota was created, changed or deleted: held sessions may fit now."""
    await release(context(memo), namespaced(namespace), None)


async def session_drift(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    await reconcile(context(memo), namespaced(namespace), name)


def child_event(kind: str) -> Any:
    async def child_changed(
        memo: kopf.Memo, namespace: str | None, meta: kopf.Meta, event: kopf.RawEvent, **_: Any
    ) -> None:
        """A child of a session changed or went: the session may have to act or say so."""
        ctx, ns = context(memo), namespaced(namespace)
        if event.get("type") == "DELETED":
            ctx.cache.forget(kind, ns, str(meta.get("name")))
        session = meta.annotations.get(SESSION_ANNOTATION)
        if session:
            await reconcile_or_retry(ctx, ns, session)

    child_changed.__name__ = child_changed.__qualname__ = f"{kind.lower()}_changed"
    return child_changed


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    sessions = (API_GROUP, API_VERSION, "sessions")
    ingress = bool(settings.sessions.ingress_domain)
    cache.register(registry, ingress=ingress)
    quotas.register(registry)
    kopf.on.event(API_GROUP, API_VERSION, "sessionquotas", registry=registry)(
        timed("SessionQuota")(quota_changed)
    )
    kopf.on.event(*sessions, registry=registry)(timed("Session")(session_changed))
    interval = settings.sessions.reconcile_interval.total_seconds()
    # The drift timer: catches up with anything a missed event left behind, and enforces
    # maxSessionDuration within one interval; from the cache, it costs no request when nothing
    # changed.
    timers.timer(registry, sessions, id="session_drift", interval=interval, initial_delay=interval)(
        timed("Session", "session_drift")(session_drift)
    )
    for kind, (group, version, plural, _) in cache.CHILDREN.items():
        if kind == "Ingress" and not ingress:
            continue
        handler = timed("Session", "child_changed")(child_event(kind))
        kopf.on.event(group, version, plural, registry=registry, labels=MANAGED_BY)(handler)
    kopf.on.event("", "v1", "pods", registry=registry, labels=MANAGED_BY)(
        timed("Session", "child_changed")(child_event("Pod"))
    )
