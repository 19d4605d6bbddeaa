"""Users and groups (issue 19) through the real facade, PostgreSQL and API server: a row made on
first sight with the identity provider's groups, admin groups added, the views each role gets,
a disabled user refused at once (REST and an open WebSocket), a deleted user's keys revoked.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from facade_testing import Client, token

pytestmark = pytest.mark.integration


def test_a_user_is_made_on_first_sight_with_the_identity_providers_groups(stack: Any) -> None:
    alice = Client(stack.url, token("alice", groups=["design", "staff"]))
    me = alice.get("/api/v1/me")
    assert me.status == 200, me
    assert me.body["user"] == "alice" and me.body["groups"] == ["design", "staff"]
    with psycopg.connect(stack.database_url) as conn:
        row = conn.execute(
            "SELECT role, idp_groups, groups FROM users WHERE id = 'alice'"
        ).fetchone()
    assert row == ("user", ["design", "staff"], [])
    # a later token with other groups replaces the identity provider's (a token without the
    # claim leaves them as they were)
    Client(stack.url, token("alice", groups=["staff"])).get("/api/v1/me")
    Client(stack.url, token("alice")).get("/api/v1/me")
    got = stack.client("olga", "operator").get("/api/v1/users/alice")
    assert got.status == 200, got
    assert got.body["identityProviderGroups"] == ["staff"] and got.body["adminGroups"] == []
    assert got.body["role"] == "user" and got.body["disabled"] is False


def test_who_may_read_and_change_users(stack: Any) -> None:
    bob = stack.client("bob")
    stack.client("alice").get("/api/v1/me")
    assert bob.get("/api/v1/users").status == 403
    assert bob.get("/api/v1/users/alice").status == 404  # others' rows are not revealed
    assert bob.get("/api/v1/users/bob").body["id"] == "bob"
    assert bob.patch("/api/v1/users/bob", {"groups": ["admins"]}).status == 403
    olga = stack.client("olga", "operator")
    assert olga.patch("/api/v1/users/alice", {"groups": ["x"]}).status == 403
    listed = olga.get("/api/v1/users")
    assert listed.status == 200, listed
    assert {"alice", "bob", "olga"} <= {u["id"] for u in listed.body["users"]}


def test_an_admin_adds_groups_but_never_a_role(stack: Any) -> None:
    root = stack.client("root", "admin")
    alice = Client(stack.url, token("alice", groups=["staff"]))
    assert alice.get("/api/v1/me").status == 200
    patched = root.patch("/api/v1/users/alice", {"groups": ["gpu-users", "gpu-users"]})
    assert patched.status == 200, patched
    assert patched.body["groups"] == ["gpu-users", "staff"]
    assert patched.body["adminGroups"] == ["gpu-users"]
    assert alice.get("/api/v1/me").body["groups"] == ["gpu-users", "staff"]
    # the admin's groups stay when the identity provider's change
    assert Client(stack.url, token("alice", groups=[])).get("/api/v1/me").body["groups"] == [
        "gpu-users"
    ]
    members = root.get("/api/v1/users?group=gpu-users").body["users"]
    assert [u["id"] for u in members] == ["alice"]
    refused = root.patch("/api/v1/users/alice", {"role": "admin"})
    assert refused.status == 422 and "role" in refused.body["details"]["fields"]
    bad = root.patch("/api/v1/users/alice", {"groups": ["", "ok"], "disabled": "yes"})
    assert bad.status == 422
    assert set(bad.body["details"]["fields"]) == {"groups", "disabled"}
    assert root.patch("/api/v1/users/nobody", {"disabled": True}).status == 404
    assert root.patch("/api/v1/users/root", {"disabled": True}).status == 422
    audit = root.get("/api/v1/admin/audit?action=update").body["entries"]
    assert any(e["resourceType"] == "user" and e["resourceId"] == "alice" for e in audit)


def test_attack_a_disabled_user_is_refused_at_once_everywhere(stack: Any) -> None:
    root = stack.client("root", "admin")
    alice = stack.client("alice")
    assert alice.get("/api/v1/sessions").status == 200
    assert root.patch("/api/v1/users/alice", {"disabled": True}).status == 200
    refused = alice.get("/api/v1/sessions")
    assert refused.status == 403 and refused.body["code"] == "USER_DISABLED"
    assert alice.post("/api/v1/sessions", {"template": "firefox"}).status == 403
    assert root.patch("/api/v1/users/alice", {"disabled": False}).status == 200
    assert alice.get("/api/v1/sessions").status == 200


def test_a_deleted_users_api_keys_stop_working(stack: Any) -> None:
    root = stack.client("root", "admin")
    made = root.post("/api/v1/admin/apikeys", {"user": "carol", "role": "user"})
    assert made.status == 201, made
    carol = Client(stack.url, made.body["key"])
    assert carol.get("/api/v1/me").body["user"] == "carol"
    assert root.delete("/api/v1/users/carol").status == 204
    assert carol.get("/api/v1/me").status == 401
    assert root.get("/api/v1/users/carol").status == 404
    assert root.delete("/api/v1/users/root").status == 422
