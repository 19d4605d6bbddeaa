"""A decision made from an older copy of a Session never reports its transition twice.

The case behind a CI failure (``test_peered_replicas_hand_over``: two ``Started`` Events): a
standby's Kopf index keeps the Session as it was when the standby was paused, and on resume a
Pod's listing can reconcile the session before the Sessions' listing brings the newer copy. The
standby then saw "not Running yet, pod ready" and posted ``Started`` again.

Here the operator's reconcile runs in this process against the real API server, with its cache
filled by hand: the Session and Template as the API server has them, children and a ready pod
that the decision takes as they are (an API server alone runs no pods). The stale copy is the
index's copy without the remembered answer of the operator's own status write.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubernetes import client

from streamspace.config import load_settings
from streamspace.lifecycle import CAUSE_ANNOTATION
from streamspace.naming import label_value, workload_name
from streamspace_operator import sessions
from streamspace_operator.cache import CHILDREN, PODS, SESSIONS, TEMPLATES, reduce
from streamspace_operator.context import Context
from streamspace_operator.kube import Kube, connect
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.integration


def child(kind: str, session: dict[str, Any], **extra: Any) -> dict[str, Any]:
    meta = session["metadata"]
    owner = {"kind": "Session", "name": meta["name"], "uid": meta["uid"], "controller": True}
    name = workload_name(meta["name"])
    metadata = {"name": name, "namespace": meta["namespace"], "uid": f"uid-{kind}"}
    return {"kind": kind, "metadata": {**metadata, "ownerReferences": [owner]}, **extra}


def indexes(
    session: dict[str, Any], template: dict[str, Any], *, running: bool = True
) -> dict[str, Any]:
    """Kopf's indexes as a running operator's would hold them for ``session``: (namespace,
    name) → objects; its Deployment available and its pod ready (``running``), or no
    Deployment and no pod (hibernated: the apply creates it for real)."""
    ns, name = session["metadata"]["namespace"], session["metadata"]["name"]
    key = (ns, workload_name(name))
    available = {"spec": {"replicas": 1}, "status": {"availableReplicas": 1}}
    children = {
        "Service": child("Service", session),
        "NetworkPolicy": child("NetworkPolicy", session),
    }
    pod = {
        "kind": "Pod",
        "metadata": {"name": f"{workload_name(name)}-0", "namespace": ns},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    if running:
        children["Deployment"] = child("Deployment", session, **available)
    found: dict[str, Any] = {
        SESSIONS: {(ns, name): [reduce("Session", session)]},
        TEMPLATES: {(ns, template["metadata"]["name"]): [reduce("Template", template)]},
        PODS: {(ns, label_value(name)): [pod] if running else []},
    }
    for kind, obj in children.items():
        found[CHILDREN[kind][3]] = {key: [obj]}
    return found


async def reconcile(
    kubeconfig: str, namespace: str, cached: dict[str, Any], *, again: bool
) -> dict[str, Any]:
    """Reconcile s1 from ``cached``; ``again``: then once more as from an index that kept the
    copy before the first reconcile's status write (what a resumed standby's index holds).
    The status after the first reconcile."""
    settings = load_settings({"KUBECONFIG": kubeconfig, "NAMESPACE": namespace})
    api = await connect(kubeconfig)
    try:
        ctx = Context(settings, kube=Kube(api))
        ctx.cache.indexes = cached  # type: ignore[assignment]
        await sessions.reconcile(ctx, namespace, "s1")
        written = await ctx.api.get_custom("Session", namespace, "s1")
        if again:
            ctx.cache.remembered.clear()  # the index alone: the copy from before that write
            await sessions.reconcile(ctx, namespace, "s1")
    finally:
        await api.close()
    assert written is not None
    return dict(written["status"])


def test_a_transition_decided_from_an_older_copy_is_not_reported_again(
    cluster: Any, api: client.ApiClient, namespace: str
) -> None:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "s1", {"user": "hal", "template": "firefox"})
    session, template = objects.session("s1"), objects.get("templates", "firefox")
    assert session is not None and template is not None
    kubeconfig, cached = str(cluster.kubeconfig), indexes(session, template)
    first = asyncio.run(reconcile(kubeconfig, namespace, cached, again=True))
    assert first["phase"] == "Running", first
    assert objects.event_reasons("s1") == ["Started"]
    # the decision made again from the Session read after the 409 left the status as it was
    assert objects.status("s1") == first


def test_a_wake_whose_status_write_met_a_newer_session_is_still_reported(
    cluster: Any, api: client.ApiClient, namespace: str
) -> None:
    """The wake's first try creates the Deployment, then its status write meets a Session
    changed since the cached copy (a connect's write, say): decided again from the Session as
    it is, the wake is reported once, with its cause."""
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "s1", {"user": "hal", "template": "firefox"})
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "sessions", "s1", {"status": {"phase": "Hibernated"}}
    )
    cause = {"metadata": {"annotations": {CAUSE_ANNOTATION: "running:Connect"}}}
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions", "s1", cause
    )
    session, template = objects.session("s1"), objects.get("templates", "firefox")
    assert session is not None and template is not None
    cached = indexes(session, template, running=False)
    objects.custom.patch_namespaced_custom_object(  # newer than the cached copy
        GROUP, VERSION, namespace, "sessions", "s1", {"metadata": {"labels": {"x": "y"}}}
    )
    status = asyncio.run(reconcile(str(cluster.kubeconfig), namespace, cached, again=False))
    assert status["phase"] == "Pending", status
    assert objects.deployment("s1") is not None
    woken = objects.events("s1", "Woken")
    assert [e.message for e in woken] == ["session woken (Connect)"]
