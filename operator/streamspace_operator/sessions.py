"""Session reconciliation: gather the inputs, let ``lifecycle.decide`` choose, apply the plan.

One idempotent reconcile, triggered by the Session's create/update/resume, by a drift timer
(``RECONCILE_INTERVAL``), by events of its Deployment and Pods, and by changes of its Template
(see ``templates``). A lock per session keeps those triggers from interleaving.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace.lifecycle import (
    CAUSE_ANNOTATION,
    Observed,
    SessionInput,
    decide,
    pods_from,
    status_changed,
)
from streamspace.manifests import MANAGED_BY, SESSION_ANNOTATION, selector
from streamspace.naming import workload_name
from streamspace_operator import timers
from streamspace_operator.context import Context, context, namespaced
from streamspace_operator.metrics import timed, transitioned

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


async def reconcile(ctx: Context, namespace: str, name: str) -> None:
    async with ctx.locks[(namespace, name)]:
        kube = ctx.api
        body = await kube.get_custom("Session", namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return  # children go with it through their owner references
        session = SessionInput.from_body(body)
        template = await kube.get_custom("Template", namespace, session.ref.template)
        observed = await observe(ctx, session)
        plan = decide(session, template, observed, datetime.now(UTC), ctx.workload_options)

        if plan.ensure_home is not None and await kube.create_if_absent(plan.ensure_home):
            log.info("created home volume %s", plan.ensure_home["metadata"]["name"])
        for manifest in plan.apply:
            await kube.apply(manifest)
        if plan.scale_to is not None:
            await kube.scale(namespace, workload_name(name), plan.scale_to, uid=plan.scale_uid)
        for kind, child, uid in plan.delete:
            await kube.delete(kind, namespace, child, uid=uid)
        if status_changed(session.status, plan.status):
            await kube.patch_status("Session", namespace, name, plan.status)
        for event in plan.events:
            await kube.post_event(body, event)
            transitioned(event.reason, session)
        if plan.spec_patch:
            await kube.patch_custom("Session", namespace, name, {"spec": plan.spec_patch})
        if plan.clear_cause:
            annotations = {CAUSE_ANNOTATION: None}
            await kube.patch_custom(
                "Session", namespace, name, {"metadata": {"annotations": annotations}}
            )


async def session_changed(memo: kopf.Memo, namespace: str | None, name: str, **_: Any) -> None:
    await reconcile(context(memo), namespaced(namespace), name)


async def child_changed(memo: kopf.Memo, namespace: str | None, meta: kopf.Meta, **_: Any) -> None:
    """A Deployment or Pod of a session changed: its availability may change the session's."""
    session = meta.annotations.get(SESSION_ANNOTATION)
    if session:
        await reconcile(context(memo), namespaced(namespace), session)


def register(registry: kopf.OperatorRegistry, settings: Settings) -> None:
    sessions = (API_GROUP, API_VERSION, "sessions")
    changed = timed("Session")(session_changed)
    for decorator in (kopf.on.resume, kopf.on.create, kopf.on.update):
        decorator(*sessions, registry=registry, backoff=RETRY_BACKOFF)(changed)
    interval = settings.sessions.reconcile_interval.total_seconds()
    # The drift timer: catches up with anything a missed event left behind, and enforces
    # maxSessionDuration within one interval.
    timers.timer(registry, sessions, id="session_drift", interval=interval, initial_delay=interval)(
        timed("Session", "session_drift")(session_changed)
    )
    for child in (("apps", "v1", "deployments"), ("", "v1", "pods")):
        kopf.on.event(*child, registry=registry, labels=MANAGED_BY)(timed("Session")(child_changed))
