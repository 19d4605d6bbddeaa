from __future__ import annotations

import pytest
from kubernetes import client

from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e


def test_smoke(stack, api: client.ApiClient) -> None:
    objects = Objects(api, stack.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    alice = stack.client("alice")
    r = alice.post(
        "/api/v1/sessions", {"template": "firefox", "resources": {"memory": "1Gi", "cpu": "500m"}}
    )
    assert r.status == 201, r
    listed = alice.get("/api/v1/sessions")
    assert listed.status == 200 and listed.body["total"] == 1, listed
    print(listed.body)
    sid = r.body["id"]
    c = alice.get(f"/api/v1/sessions/{sid}/connect")
    assert c.status == 200, c
    print(c.body)
    bob = stack.client("bob")
    assert bob.get(f"/api/v1/sessions/{sid}").status == 404
