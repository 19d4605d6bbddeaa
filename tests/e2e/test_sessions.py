"""Sessions end to end: the real operator against the full-profile control plane (kwok nodes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, TIMEOUT, VERSION, Objects

pytestmark = pytest.mark.e2e


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


def test_session_runs_hibernates_wakes_terminates_and_is_deleted(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator()
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "alice-firefox", {"user": "alice", "template": "firefox"})

    status = objects.wait_phase("alice-firefox", "Running")
    pods = objects.pods("alice-firefox")
    assert [p.metadata.name for p in pods] == [status["podName"]]
    assert status["url"] == f"http://alice-firefox.{objects.ns}.svc.cluster.local:3000/"
    assert status["startedAt"] and status["observedGeneration"] == 1
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions == {"Ready": "True", "TemplateResolved": "True", "WorkloadAvailable": "True"}
    dep = objects.deployment("alice-firefox")
    assert dep.metadata.owner_references[0].kind == "Session"
    assert dep.metadata.labels["stream.space/user"] == "alice"
    container = dep.spec.template.spec.containers[0]
    assert container.resources.limits == {"cpu": "1", "memory": "2Gi"}  # 1000m, normalised
    assert container.volume_mounts[0].mount_path == "/config"
    pvc = objects.core.read_namespaced_persistent_volume_claim("home-alice", objects.ns)
    assert not pvc.metadata.owner_references

    objects.set_state("alice-firefox", "hibernated")
    status = objects.wait_phase("alice-firefox", "Hibernated")
    assert objects.pods("alice-firefox") == []
    assert objects.deployment("alice-firefox").spec.replicas == 0
    assert status["hibernatedAt"] and "url" not in status and "podName" not in status

    objects.set_state("alice-firefox", "running")
    status = objects.wait_phase("alice-firefox", "Running")
    assert status["podName"] in [p.metadata.name for p in objects.pods("alice-firefox")]

    objects.set_state("alice-firefox", "terminated")
    objects.wait_phase("alice-firefox", "Terminated")
    assert objects.deployment("alice-firefox") is None
    assert objects.session("alice-firefox") is not None  # the CR stays until deleted

    assert wait_until(
        lambda: (
            objects.event_reasons("alice-firefox")
            == ["Started", "Hibernated", "Woken", "Started", "Terminated"]
        ),
        10,
    ), objects.event_reasons("alice-firefox")

    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-firefox"
    )
    assert wait_until(lambda: objects.session("alice-firefox") is None, TIMEOUT)
    objects.core.read_namespaced_persistent_volume_claim("home-alice", objects.ns)  # kept


def test_deleting_a_running_session_removes_its_children(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator()
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "bob-firefox", {"user": "bob", "template": "firefox"})
    objects.wait_phase("bob-firefox", "Running")
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "bob-firefox"
    )
    assert wait_until(
        lambda: objects.deployment("bob-firefox") is None and not objects.pods("bob-firefox"),
        TIMEOUT,
    )
    services = objects.core.list_namespaced_service(objects.ns).items
    assert [s.metadata.name for s in services] == []
    objects.core.read_namespaced_persistent_volume_claim("home-bob", objects.ns)


def test_missing_template_waits_then_proceeds(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator()
    objects.create("sessions", "carol-gimp", {"user": "carol", "template": "gimp"})
    status = objects.wait_phase("carol-gimp", "Pending")
    assert wait_until(
        lambda: any(
            c["type"] == "TemplateResolved" and c["reason"] == "TemplateNotFound"
            for c in objects.status("carol-gimp").get("conditions", [])
        ),
        TIMEOUT,
    ), status
    assert objects.deployment("carol-gimp") is None
    objects.create("templates", "gimp", {**TEMPLATE, "displayName": "GIMP"})
    objects.wait_phase("carol-gimp", "Running")
    assert "TemplateNotFound" in objects.event_reasons("carol-gimp")


def test_template_status_reports_validity(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator()
    objects.create("templates", "good", TEMPLATE)
    objects.create("templates", "portless", {"baseImage": "busybox", "vnc": {"enabled": False}})

    def template_status(name: str) -> dict[str, Any]:
        obj = objects.custom.get_namespaced_custom_object(
            GROUP, VERSION, objects.ns, "templates", name
        )
        return obj.get("status") or {}

    assert wait_until(lambda: template_status("good").get("valid") is True, TIMEOUT)
    assert template_status("good")["appType"] == "desktop"
    assert wait_until(lambda: template_status("portless").get("valid") is False, TIMEOUT)
    assert "needs vnc/kasmvnc enabled or a port" in template_status("portless")["message"]
    objects.create("sessions", "dan-portless", {"user": "dan", "template": "portless"})
    status = objects.wait_phase("dan-portless", "Failed")
    assert objects.deployment("dan-portless") is None
    assert status["conditions"][1]["reason"] == "TemplateInvalid"


def test_two_sessions_of_one_user_and_template_and_long_names(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator()
    objects.create("templates", "firefox", TEMPLATE)
    long_name = "erin-firefox." + "x" * 120 + ".example"
    names = ["erin-firefox-0a1b2c3d", "erin-firefox-4e5f6a7b", long_name]
    for name in names:
        objects.create("sessions", name, {"user": "erin", "template": "firefox"})
    for name in names:
        objects.wait_phase(name, "Running")
    deployments = {objects.deployment(name).metadata.name for name in names}
    assert len(deployments) == 3
    assert all(re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", d) and len(d) <= 63 for d in deployments)
    pvcs = objects.core.list_namespaced_persistent_volume_claim(objects.ns).items
    assert [p.metadata.name for p in pvcs] == ["home-erin"]  # shared by all three


def test_max_session_duration_terminates(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    start_operator(RECONCILE_INTERVAL="1s")
    objects.create("templates", "firefox", TEMPLATE)
    objects.create(
        "sessions",
        "frank-firefox",
        {"user": "frank", "template": "firefox", "maxSessionDuration": "3s"},
    )
    objects.wait_phase("frank-firefox", "Running")
    objects.wait_phase("frank-firefox", "Terminated", timeout=30)
    assert (objects.session("frank-firefox") or {})["spec"]["state"] == "terminated"
    assert "MaxDurationExceeded" in objects.event_reasons("frank-firefox")


def test_operator_restart_converges(objects: Objects, start_operator: Callable[..., Any]) -> None:
    first = start_operator()
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "gina-firefox", {"user": "gina", "template": "firefox"})
    objects.wait_phase("gina-firefox", "Running")
    first.stop()

    # While the operator is down: a new session, a state change, and a deletion.
    objects.create("sessions", "gina-two", {"user": "gina", "template": "firefox"})
    objects.set_state("gina-firefox", "hibernated")
    objects.create("sessions", "gina-three", {"user": "gina", "template": "firefox"})
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "gina-three"
    )
    start_operator()
    objects.wait_phase("gina-two", "Running")
    objects.wait_phase("gina-firefox", "Hibernated")
    assert wait_until(lambda: objects.session("gina-three") is None, TIMEOUT)
    assert objects.deployment("gina-three") is None


def test_peered_replicas_hand_over(objects: Objects, start_operator: Callable[..., Any]) -> None:
    """Two replicas peer: the higher priority acts; when it stops, the other takes over."""
    active = start_operator(priority=10)
    start_operator(priority=5)
    peering = objects.custom.get_namespaced_custom_object(
        "kopf.dev", "v1", objects.ns, "kopfpeerings", "streamspace"
    )
    assert wait_until(
        lambda: (
            len(
                objects.custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", objects.ns, "kopfpeerings", "streamspace"
                ).get("status")
                or {}
            )
            == 2
        ),
        TIMEOUT,
    ), peering
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", "hal-one", {"user": "hal", "template": "firefox"})
    objects.wait_phase("hal-one", "Running")
    active.stop()
    objects.create("sessions", "hal-two", {"user": "hal", "template": "firefox"})
    objects.wait_phase("hal-two", "Running")
    assert objects.event_reasons("hal-one") == ["Started"]  # acted on exactly once
