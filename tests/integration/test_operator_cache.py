"""The operator reconciles from what its watches hold and writes only what changed (issue 17).

Requests are counted where the operator counts them, ``streamspace_kubernetes_requests_total``
(the operator runs as a thread of this process, so its registry is ours to read), and handler
runs by ``streamspace_reconcile_duration_seconds``.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from streamspace.naming import workload_name
from streamspace_dev.process import wait_until
from streamspace_operator.metrics import REGISTRY
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.integration

KOPF_ANNOTATIONS = "operator.stream.space/"


def requests() -> Counter[tuple[str, str]]:
    """Requests sent so far, by (client, method)."""
    counts: Counter[tuple[str, str]] = Counter()
    for family in REGISTRY.collect():
        if family.name == "streamspace_kubernetes_requests":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    counts[(sample.labels["client"], sample.labels["method"])] += int(sample.value)
    return counts


def handled(handler: str) -> float:
    """How often the Session handler ``handler`` has run (successful or not)."""
    labels = {"kind": "Session", "handler": handler}
    return REGISTRY.get_sample_value("streamspace_reconcile_duration_seconds_count", labels) or 0


def settled(quiet_for: float = 3.0) -> Callable[[], bool]:
    """A predicate: true once no request went out for ``quiet_for`` seconds (three ticks of
    every timer the tests set to a second)."""
    last = [requests()]
    since = [time.monotonic()]

    def quiet() -> bool:
        now = requests()
        if now != last[0]:
            last[0], since[0] = now, time.monotonic()
        return time.monotonic() - since[0] >= quiet_for

    return quiet


def children(objects: Objects, name: str) -> dict[str, str | None]:
    """kind → uid of the session's Deployment, Service and NetworkPolicy (None: absent)."""
    child = workload_name(name)
    readers: dict[str, Any] = {
        "Deployment": objects.apps.read_namespaced_deployment,
        "Service": objects.core.read_namespaced_service,
        "NetworkPolicy": client.NetworkingV1Api(
            objects.core.api_client
        ).read_namespaced_network_policy,
    }
    uids: dict[str, str | None] = {}
    for kind, read in readers.items():
        try:
            uids[kind] = read(child, objects.ns).metadata.uid
        except client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise
            uids[kind] = None
    return uids


def test_an_unchanged_session_costs_no_request(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    """Events of the session and its drift timer re-run the reconcile; with nothing changed it
    reads nothing (the watches hold it all) and writes nothing, and Kopf writes no annotations
    of its own on the session either."""
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    # every per-session timer ticks each second: none of them may write for an unchanged session
    start_operator(RECONCILE_INTERVAL="1s", IDLE_CHECK_INTERVAL="1s", HEARTBEAT_CHECK_INTERVAL="1s")
    objects.create(
        "sessions", "s1", {"user": "alice", "template": "firefox", "persistentHome": False}
    )
    assert wait_until(lambda: all(children(objects, "s1").values()), 30), children(objects, "s1")

    def settled_phase() -> bool:
        """Running once a pod runs (an earlier test started the full profile: kwok runs it),
        Pending for good where no pod ever comes (the minimal profile has no controllers)."""
        phase = objects.status("s1").get("phase")
        return phase == "Running" or (phase == "Pending" and not objects.pods("s1"))

    assert wait_until(settled_phase, 60), objects.status("s1")
    assert wait_until(settled(), 60, interval=0.5), "the operator never went quiet"

    before, events, drifts = requests(), handled("session_changed"), handled("session_drift")
    # an event of the session that changes nothing the operator decides on
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions", "s1", {"metadata": {"labels": {"team": "blue"}}}
    )
    assert wait_until(
        lambda: handled("session_changed") > events and handled("session_drift") >= drifts + 3, 30
    ), "neither the event nor the drift timer reconciled the session"
    sent = requests() - before
    ours = {key: n for key, n in sent.items() if key[0] == "streamspace"}
    kopf_writes = {key: n for key, n in sent.items() if key[0] == "kopf" and key[1] != "GET"}
    assert ours == {}, f"the operator sent {ours} for a session that did not change"
    assert kopf_writes == {}, f"Kopf wrote {kopf_writes}"  # (a GET is a watch reopened)
    annotations = (objects.session("s1") or {})["metadata"].get("annotations") or {}
    assert not [key for key in annotations if key.startswith(KOPF_ANNOTATIONS)], annotations


def test_a_child_deleted_is_created_again_from_its_event(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    """The deletion reaches the cache through the watch and reconciles the session at once (the
    drift timer is an hour away); the new Service is a new object, owned by the session."""
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    start_operator(RECONCILE_INTERVAL="1h")
    objects.create(
        "sessions", "s1", {"user": "alice", "template": "firefox", "persistentHome": False}
    )
    assert wait_until(lambda: all(children(objects, "s1").values()), 30)
    first = children(objects, "s1")
    objects.core.delete_namespaced_service(workload_name("s1"), namespace)
    assert wait_until(
        lambda: children(objects, "s1")["Service"] not in (None, first["Service"]), 30
    ), "the Service was not created again"
    again = children(objects, "s1")
    assert again["Deployment"] == first["Deployment"]
    assert again["NetworkPolicy"] == first["NetworkPolicy"]
    service = objects.core.read_namespaced_service(workload_name("s1"), namespace)
    session_uid = (objects.session("s1") or {})["metadata"]["uid"]
    assert [(o.uid, o.controller) for o in service.metadata.owner_references] == [
        (session_uid, True)
    ]


def test_a_session_created_before_the_operator_starts_is_reconciled_once_listed(
    api: client.ApiClient, namespace: str, start_operator: Callable[..., Any]
) -> None:
    """The initial listing fills the cache before any handler runs: a session that waited for
    the operator gets its children, and a hibernate then scales the one Deployment it has."""
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create(
        "sessions", "s1", {"user": "alice", "template": "firefox", "persistentHome": False}
    )
    start_operator(RECONCILE_INTERVAL="1h")
    assert wait_until(lambda: all(children(objects, "s1").values()), 30)
    first = children(objects, "s1")
    objects.set_state("s1", "hibernated")
    assert wait_until(lambda: objects.deployment("s1").spec.replicas == 0, 30)
    objects.set_state("s1", "running")
    assert wait_until(lambda: objects.deployment("s1").spec.replicas == 1, 30)
    assert children(objects, "s1") == first, "the same children, none created twice"
