"""Sharing and transfer with the operator running, on the full profile (issue 19, item 3): a
control share wakes alice's session by connecting, the operator counts bob's connection and
stops counting it once alice revokes the share; a transferred session starts again with the new
owner's home volume, never the previous owner's."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from streamspace.naming import home_pvc_name, workload_name
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

SESSIONS = "/api/v1/sessions"


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, stack: Any) -> Objects:
    objects = Objects(api, stack.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def claims(objects: Objects, session: str) -> list[str]:
    """The volume claims of the session's Deployment's pod template."""
    deployment = objects.deployment(workload_name(session))
    assert deployment is not None
    volumes = deployment.spec.template.spec.volumes or []
    return [v.persistent_volume_claim.claim_name for v in volumes if v.persistent_volume_claim]


def test_a_control_share_wakes_counts_and_is_revoked_then_the_session_changes_hands(
    stack: Any, objects: Objects
) -> None:
    alice, bob, admin = stack.client("alice"), stack.client("bob"), stack.client("root", "admin")
    created = alice.post(SESSIONS, {"template": "firefox", "state": "hibernated"})
    assert created.status == 201, created
    name = created.body["id"]
    objects.wait_phase(name, "Hibernated")
    session = f"{SESSIONS}/{name}"
    assert alice.post(f"{session}/shares", {"user": "bob", "access": "control"}).status == 200

    # bob's connect wakes it, and the operator counts his connection like the owner's
    connected = bob.get(f"{session}/connect")
    assert connected.status == 200, connected
    objects.wait_phase(name, "Running")
    assert wait_until(lambda: objects.status(name).get("activeConnections") == 1, 30)
    assert claims(objects, name) == [home_pvc_name("alice")]

    # revoked: his connection is gone at once, and no longer counted
    assert alice.delete(f"{session}/shares/bob").status == 204
    assert objects.get("connections", connected.body["connectionId"]) is None
    assert wait_until(lambda: objects.status(name).get("activeConnections") == 0, 30)

    # transferred while hibernated: bob's connect starts it with bob's home, not alice's
    assert admin.post(f"{session}/transfer", {"user": "bob"}).status == 409  # running
    assert alice.patch(session, {"state": "hibernated"}).status == 200
    objects.wait_phase(name, "Hibernated")
    moved = admin.post(f"{session}/transfer", {"user": "bob"})
    assert moved.status == 200, moved
    assert bob.get(f"{session}/connect").status == 200
    objects.wait_phase(name, "Running")
    assert claims(objects, name) == [home_pvc_name("bob")]
    assert alice.get(session).status == 404
