"""The operator acts only on what its Sessions control (issue 13 item 3), on the real API server.

The attack: a Session named like someone else's Deployment and Service. Before the fix,
``terminated`` deleted them, ``hibernated`` scaled the Deployment to zero and ``running``
adopted it. Now the session reports ``NameConflict`` and the foreign objects keep their uid,
spec and owners; every write to a child carries the child's uid as a precondition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes_asyncio.client.exceptions import ApiException as AsyncApiException

from streamspace_dev.process import wait_until
from streamspace_operator.kube import FIELD_MANAGER, Kube, connect
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.integration

FOREIGN_IMAGE = "registry.example/team/web:1.2"


def foreign_workload(objects: Objects, name: str) -> tuple[str, str]:
    """Someone else's Deployment and Service called ``name``; their uids."""
    labels = {"app": "web"}
    deployment = {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "web", "image": FOREIGN_IMAGE}]},
            },
        },
    }
    service = {"metadata": {"name": name}, "spec": {"selector": labels, "ports": [{"port": 80}]}}
    dep = objects.apps.create_namespaced_deployment(objects.ns, deployment)
    svc = objects.core.create_namespaced_service(objects.ns, service)
    return dep.metadata.uid, svc.metadata.uid


def untouched(objects: Objects, name: str, uids: tuple[str, str]) -> None:
    dep = objects.apps.read_namespaced_deployment(name, objects.ns)
    svc = objects.core.read_namespaced_service(name, objects.ns)
    assert (dep.metadata.uid, svc.metadata.uid) == uids
    assert dep.spec.replicas == 2
    assert dep.spec.template.spec.containers[0].image == FOREIGN_IMAGE
    for obj in (dep, svc):
        assert not obj.metadata.owner_references, obj.metadata.owner_references
        assert FIELD_MANAGER not in {m.manager for m in obj.metadata.managed_fields or []}


def ready(objects: Objects, name: str) -> dict[str, Any]:
    conditions = objects.status(name).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def reconciled(objects: Objects, name: str) -> bool:
    """The operator has judged the session's current generation."""
    session = objects.session(name) or {}
    generation = session.get("metadata", {}).get("generation")
    return bool(generation) and objects.status(name).get("observedGeneration") == generation


def test_a_session_named_like_foreign_objects_touches_nothing(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    objects = Objects(api, namespace)
    uids = foreign_workload(objects, "web")
    objects.create("templates", "firefox", TEMPLATE)
    start_operator(RECONCILE_INTERVAL="1s")

    # running: no adoption, no overwrite, no home volume: a NameConflict, reported once
    objects.create("sessions", "web", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: ready(objects, "web").get("reason") == "NameConflict", 30)
    condition = ready(objects, "web")
    assert condition["status"] == "False"
    assert "Deployment/web, Service/web" in condition["message"]
    assert objects.status("web")["phase"] == "Failed"
    assert wait_until(lambda: objects.event_reasons("web") == ["NameConflict"], 10)
    assert objects.events("web")[0].type == "Warning"
    untouched(objects, "web", uids)
    with pytest.raises(ApiException) as missing:
        objects.core.read_namespaced_persistent_volume_claim("home-alice", namespace)
    assert missing.value.status == 404

    # hibernated: the foreign Deployment is not scaled
    objects.set_state("web", "hibernated")
    assert wait_until(lambda: reconciled(objects, "web"), 30)
    assert ready(objects, "web")["reason"] == "NameConflict"
    untouched(objects, "web", uids)

    # terminated: nothing is deleted
    objects.set_state("web", "terminated")
    assert wait_until(lambda: reconciled(objects, "web"), 30)
    assert ready(objects, "web")["reason"] == "NameConflict"
    untouched(objects, "web", uids)
    assert objects.event_reasons("web") == ["NameConflict"], "reported once, not per reconcile"

    # once the names are free, the session gets children of its own
    objects.apps.delete_namespaced_deployment("web", namespace)
    objects.core.delete_namespaced_service("web", namespace)
    objects.set_state("web", "running")  # the test is an admin: it may revive
    assert wait_until(lambda: objects.deployment("web") is not None, 30)
    session_uid = (objects.session("web") or {})["metadata"]["uid"]
    owners = objects.deployment("web").metadata.owner_references
    assert [(o.uid, o.controller) for o in owners] == [(session_uid, True)]
    # no NameConflict any more: Pending, or already Running when an earlier test started the
    # full control plane (kwok runs the pod at once)
    assert wait_until(lambda: ready(objects, "web").get("reason") in ("Pending", "Running"), 30)


def test_writes_to_a_child_are_conditional_on_its_uid(
    cluster: Any, api: client.ApiClient, namespace: str
) -> None:
    """A child replaced by another object between the operator's read and its write (same
    name, new uid): deletes are refused with 409 (uid precondition), patches with 422 (uid is
    immutable), and an apply for a child that is gone creates nothing (409)."""
    objects = Objects(api, namespace)
    uids = foreign_workload(objects, "web")
    stale_uid = "00000000-0000-0000-0000-000000000000"  # the uid the operator had read

    async def attempts() -> list[int]:
        kube = Kube(await connect(str(cluster.kubeconfig)))
        manifest = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": namespace, "uid": stale_uid},
            "spec": {"replicas": 0},
        }
        gone = {**manifest, "metadata": {**manifest["metadata"], "name": "gone"}}
        writes = [
            kube.delete("Deployment", namespace, "web", uid=stale_uid),
            kube.delete("Service", namespace, "web", uid=stale_uid),
            kube.scale(namespace, "web", 0, uid=stale_uid),
            kube.apply(manifest),
            kube.apply(gone),
        ]
        statuses = []
        try:
            for write in writes:
                try:
                    await write
                except AsyncApiException as exc:
                    statuses.append(exc.status)
                else:
                    statuses.append(200)
        finally:
            await kube.api.close()
        return statuses

    assert asyncio.run(attempts()) == [409, 409, 422, 422, 409]
    untouched(objects, "web", uids)
    assert objects.deployment("gone") is None


def test_a_connection_controlled_by_another_owner_is_not_adopted(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "s1", {"user": "alice", "template": "firefox"})
    objects.create("sessions", "old", {"user": "alice", "template": "firefox"})
    other = {  # another live Session controls it (a dangling owner would be garbage-collected)
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Session",
        "name": "old",
        "uid": (objects.session("old") or {})["metadata"]["uid"],
        "controller": True,
    }
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Connection",
        "metadata": {"name": "c-foreign", "ownerReferences": [other]},
        "spec": {"session": "s1", "user": "alice"},
    }
    objects.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "connections", body)
    start_operator()

    def conflict_events() -> list[Any]:
        selector = "involvedObject.name=c-foreign,involvedObject.kind=Connection"
        events = objects.core.list_namespaced_event(namespace, field_selector=selector).items
        return [e for e in events if e.reason == "NameConflict"]

    assert wait_until(lambda: bool(conflict_events()), 30)
    connection = objects.get("connections", "c-foreign") or {}
    assert connection["metadata"]["ownerReferences"] == [other]
    assert "connectedAt" not in (connection.get("status") or {})
    assert (objects.status("s1").get("activeConnections") or 0) == 0
