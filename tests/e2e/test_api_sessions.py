"""Sessions and connections over REST, with the real operator, facade, API server and PostgreSQL."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
import pytest
from kubernetes import client

from facade_testing import JWT_SECRET, Client, FacadeThread, token
from streamspace.auth.apikeys import create_api_key, revoke_api_key
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 30


@pytest.fixture
def objects(api: client.ApiClient, stack: Any) -> Objects:
    objects = Objects(api, stack.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def session_ids(caller: Client, query: str = "") -> set[str]:
    reply = caller.get("/api/v1/sessions" + query)
    assert reply.status == 200, reply
    assert reply.body["total"] == len(reply.body["sessions"])
    return {s["id"] for s in reply.body["sessions"]}


def audit_rows(stack: Any, action: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(stack.database_url) as conn:
        return conn.execute(
            "SELECT user_id, resource_type, resource_id, changes, ip_address FROM audit_log "
            "WHERE action = %s ORDER BY id",
            (action,),
        ).fetchall()


def test_session_lifecycle_over_rest(stack: Any, objects: Objects) -> None:
    alice = stack.client("alice")
    created = alice.post(
        "/api/v1/sessions",
        {"template": "firefox", "resources": {"memory": "1Gi", "cpu": "500m"}, "tags": ["dev"]},
    )
    assert created.status == 201, created
    sid = created.body["id"]
    assert sid.startswith("alice-firefox-") and len(sid) == len("alice-firefox-") + 8
    assert created.body["user"] == "alice" and created.body["state"] == "running"
    assert created.body["resources"] == {
        "requests": {"memory": "1Gi", "cpu": "500m"},
        "limits": {"memory": "1Gi", "cpu": "500m"},
    }
    # read-your-writes: the list shows it right after the 201
    assert sid in session_ids(alice)
    cr = objects.get("sessions", sid)
    assert cr is not None and cr["spec"]["user"] == "alice" and cr["spec"]["tags"] == ["dev"]

    structured = alice.post(
        "/api/v1/sessions",
        {
            "template": "firefox",
            "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "2Gi"}},
            "idleTimeout": "10m",
            "maxSessionDuration": "2h",
            "persistentHome": False,
        },
    )
    assert structured.status == 201, structured
    spec = objects.get("sessions", structured.body["id"])["spec"]  # type: ignore[index]
    assert spec["resources"] == {"requests": {"cpu": "250m"}, "limits": {"memory": "2Gi"}}
    assert (spec["idleTimeout"], spec["maxSessionDuration"], spec["persistentHome"]) == (
        "10m",
        "2h",
        False,
    )

    got = alice.get(f"/api/v1/sessions/{sid}")
    assert got.status == 200 and got.body["template"] == "firefox", got

    def list_item_is_the_single_view() -> bool:
        listed = {s["id"]: s for s in alice.get("/api/v1/sessions").body["sessions"]}
        return bool(listed[sid] == alice.get(f"/api/v1/sessions/{sid}").body)

    assert wait_until(list_item_is_the_single_view, TIMEOUT)  # SQL and Python views agree
    assert session_ids(alice, "?tag=dev") == {sid}
    assert session_ids(alice, "?template=firefox") == {sid, structured.body["id"]}
    assert session_ids(alice, "?state=hibernated") == set()

    patched = alice.patch(f"/api/v1/sessions/{sid}", {"state": "hibernated"})
    assert patched.status == 200 and patched.body["state"] == "hibernated", patched
    assert objects.get("sessions", sid)["spec"]["state"] == "hibernated"  # type: ignore[index]
    assert session_ids(alice, "?state=hibernated") == {sid}

    deleted = alice.delete(f"/api/v1/sessions/{sid}")
    assert deleted.status == 204, deleted
    assert sid not in session_ids(alice)
    assert alice.get(f"/api/v1/sessions/{sid}").status == 404
    assert wait_until(lambda: objects.get("sessions", sid) is None, TIMEOUT)

    rows = audit_rows(stack, "create")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("alice", "session", sid),
        ("alice", "session", structured.body["id"]),
    ]
    assert rows[0][3]["template"] == "firefox" and rows[0][3]["status"] == 201
    assert rows[0][4] == "127.0.0.1"
    assert [(r[0], r[2]) for r in audit_rows(stack, "update")] == [("alice", sid)]
    assert [(r[0], r[2]) for r in audit_rows(stack, "delete")] == [("alice", sid)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "template"),
        ({"template": "Not_A_Name"}, "template"),
        ({"template": "missing"}, "template"),
        ({"template": "firefox", "idleTimeout": "30 minutes"}, "idleTimeout"),
        ({"template": "firefox", "maxSessionDuration": 5}, "maxSessionDuration"),
        ({"template": "firefox", "tags": ["ok", "not ok"]}, "tags"),
        ({"template": "firefox", "persistentHome": "yes"}, "persistentHome"),
        ({"template": "firefox", "state": "paused"}, "state"),
        ({"template": "firefox", "resources": {"gpu": 1}}, "resources"),
        ({"template": "firefox", "colour": "blue"}, "colour"),
        ({"template": "firefox", "user": "Alice"}, "user"),
    ],
)
def test_bad_session_requests_name_the_field(
    stack: Any, objects: Objects, body: dict[str, Any], field: str
) -> None:
    reply = stack.client("alice").post("/api/v1/sessions", body)
    assert reply.status == 422, reply
    assert reply.body["code"] == "VALIDATION_FAILED"
    assert field in reply.body["details"]["fields"], reply.body
    assert session_ids(stack.client("alice", "admin")) == set()


def test_malformed_bodies_and_unknown_routes_are_json_errors(stack: Any, objects: Objects) -> None:
    alice = stack.client("alice")
    for raw in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        reply = alice.request("POST", "/api/v1/sessions", raw=raw)
        assert reply.status == 400 and reply.body["code"] == "BAD_REQUEST", reply
    assert alice.get("/api/v1/nothing-here").body["code"] == "NOT_FOUND"
    reply = alice.request("PUT", "/api/v1/sessions")
    assert reply.status == 405 and reply.body["code"] == "METHOD_NOT_ALLOWED"
    too_big = alice.request("POST", "/api/v1/sessions", raw=b"{" + b" " * (2 * 1024**2) + b"}")
    assert too_big.status == 413 and "error" in too_big.body
    empty_patch = alice.patch("/api/v1/sessions/whatever", {})
    assert empty_patch.status == 422


def test_users_only_see_and_touch_their_own_sessions(stack: Any, objects: Objects) -> None:
    alice, bob = stack.client("alice"), stack.client("bob")
    sid = alice.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
    conn = alice.get(f"/api/v1/sessions/{sid}/connect").body["connectionId"]
    bobs = bob.post("/api/v1/sessions", {"template": "firefox"}).body["id"]

    assert session_ids(bob) == {bobs}
    assert session_ids(bob, "?user=alice") == set()
    for method, path in [
        ("GET", f"/api/v1/sessions/{sid}"),
        ("PATCH", f"/api/v1/sessions/{sid}"),
        ("DELETE", f"/api/v1/sessions/{sid}"),
        ("GET", f"/api/v1/sessions/{sid}/connect"),
        ("GET", f"/api/v1/sessions/{sid}/connections"),
        ("POST", f"/api/v1/sessions/{sid}/heartbeat?connectionId={conn}"),
        ("DELETE", f"/api/v1/sessions/{sid}/disconnect?connectionId={conn}"),
        ("POST", f"/api/v1/sessions/{sid}/disconnect?connectionId={conn}"),
        # bob's own session cannot reach alice's connection either
        ("POST", f"/api/v1/sessions/{bobs}/heartbeat?connectionId={conn}"),
        ("DELETE", f"/api/v1/sessions/{bobs}/disconnect?connectionId={conn}"),
    ]:
        body = {"state": "hibernated"} if method == "PATCH" else None
        reply = bob.request(method, path, body)
        assert reply.status == 404, (method, path, reply)
        assert reply.body["code"] == "NOT_FOUND"
    # nothing changed
    assert objects.get("sessions", sid)["spec"]["state"] == "running"  # type: ignore[index]
    assert objects.get("connections", conn) is not None
    assert bob.post("/api/v1/sessions", {"template": "firefox", "user": "alice"}).status == 403

    operator = stack.client("olga", "operator")
    assert session_ids(operator) >= {sid, bobs}
    assert session_ids(operator, "?user=alice") == {sid}
    assert operator.get(f"/api/v1/sessions/{sid}").status == 200
    admin = stack.client("root", "admin")
    made = admin.post("/api/v1/sessions", {"template": "firefox", "user": "carol"})
    assert made.status == 201 and made.body["user"] == "carol"
    assert session_ids(stack.client("carol")) == {made.body["id"]}


def test_connect_heartbeat_disconnect(stack: Any, objects: Objects) -> None:
    alice = stack.client("alice")
    sid = alice.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
    connect = alice.request("GET", f"/api/v1/sessions/{sid}/connect", headers={"User-Agent": "t/1"})
    assert connect.status == 200, connect
    assert set(connect.body) >= {"connectionId", "sessionUrl", "state", "ready"}
    cid = connect.body["connectionId"]
    cr = objects.get("connections", cid)
    assert cr is not None
    assert cr["spec"] == {
        "session": sid,
        "user": "alice",
        "clientIP": "127.0.0.1",
        "userAgent": "t/1",
    }

    listed = alice.get(f"/api/v1/sessions/{sid}/connections")
    assert listed.status == 200 and [c["id"] for c in listed.body["connections"]] == [cid]

    beat = alice.post(f"/api/v1/sessions/{sid}/heartbeat?connectionId={cid}")
    assert beat.status == 200, beat
    assert wait_until(
        lambda: (
            (objects.get("connections", cid) or {}).get("status", {}).get("lastHeartbeat")
            == beat.body["lastHeartbeat"]
        ),
        TIMEOUT,
    )
    assert alice.post(f"/api/v1/sessions/{sid}/heartbeat").status == 422
    assert alice.post(f"/api/v1/sessions/{sid}/heartbeat?connectionId=nope").status == 404

    second = alice.get(f"/api/v1/sessions/{sid}/connect").body["connectionId"]
    gone = alice.delete(f"/api/v1/sessions/{sid}/disconnect?connectionId={cid}")
    assert gone.status == 200 and gone.body["disconnected"] is True, gone
    also = alice.post(f"/api/v1/sessions/{sid}/disconnect?connectionId={second}")
    assert also.status == 200, also
    assert alice.get(f"/api/v1/sessions/{sid}/connections").body["total"] == 0
    assert wait_until(lambda: objects.get("connections", cid) is None, TIMEOUT)
    assert [r[2] for r in audit_rows(stack, "connect")] == [sid, sid]

    alice.patch(f"/api/v1/sessions/{sid}", {"state": "terminated"})
    refused = alice.get(f"/api/v1/sessions/{sid}/connect")
    assert refused.status == 409 and refused.body["code"] == "CONFLICT"


def test_kubectl_objects_are_mirrored(stack: Any, objects: Objects) -> None:
    """Sessions made or removed with kubectl show up in the API exactly like REST ones."""
    alice = stack.client("alice")
    objects.create("sessions", "by-kubectl", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: "by-kubectl" in session_ids(alice), TIMEOUT)
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "sessions", "by-kubectl", {"spec": {"tags": ["ops"]}}
    )
    assert wait_until(lambda: session_ids(alice, "?tag=ops") == {"by-kubectl"}, TIMEOUT)
    assert alice.get("/api/v1/sessions/by-kubectl").body["tags"] == ["ops"]
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "sessions", "by-kubectl"
    )
    assert wait_until(lambda: session_ids(alice) == set(), TIMEOUT)


def test_authentication(stack: Any, objects: Objects) -> None:
    anonymous = Client(stack.url)
    assert anonymous.get("/health").status == 200
    assert anonymous.get("/version").body["api"] == "v1"
    reply = anonymous.get("/api/v1/sessions")
    assert reply.status == 401 and reply.body["code"] == "UNAUTHORIZED"
    now = datetime.now(UTC)
    claims = {
        "iss": "streamspace",
        "sub": "alice",
        "role": "admin",
        "exp": now + timedelta(hours=1),
    }
    unsigned = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        + b"."
        + base64.urlsafe_b64encode(json.dumps({**claims, "exp": 2**31}).encode()).rstrip(b"=")
        + b"."
    ).decode()
    bad_tokens = {
        "alg none": unsigned,
        "expired": jwt.encode({**claims, "exp": now - timedelta(hours=1)}, JWT_SECRET, "HS256"),
        "wrong key": jwt.encode(claims, "another-secret-of-the-same-length-xxxxxxx", "HS256"),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, JWT_SECRET, "HS256"),
        "garbage": "not-a-token",
        "unknown API key": "sk_" + "x" * 43,
    }
    for why, bad in bad_tokens.items():
        reply = Client(stack.url, bad).get("/api/v1/sessions")
        assert reply.status == 401, (why, reply)
        assert bad not in json.dumps(reply.body)
    expired = Client(stack.url, bad_tokens["expired"]).get("/api/v1/sessions")
    assert "expired" in expired.body["error"]

    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        key = create_api_key(conn, "dora", "user", "laptop")
        keyed = Client(stack.url, key)
        sid = keyed.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
        assert sid.startswith("dora-firefox-")
        assert keyed.get("/api/v1/me").body.items() >= {"user": "dora", "via": "apikey"}.items()
        key_id = conn.execute("SELECT id FROM api_keys WHERE user_id = 'dora'").fetchone()[0]  # type: ignore[index]
        assert revoke_api_key(conn, key_id)
    # revoked by the CLI's statement, not through this facade: refused once the facade's key
    # cache entry runs out (API_KEY_CACHE_TTL, decision 151)
    assert wait_until(lambda: keyed.get("/api/v1/sessions").status == 401, 30, interval=0.2)

    # admin endpoints: keys are shown once, never listed, and a user may not manage them
    admin = stack.client("root", "admin")
    assert stack.client("alice").get("/api/v1/admin/apikeys").status == 403
    made = admin.post("/api/v1/admin/apikeys", {"user": "erin", "role": "operator"})
    assert made.status == 201 and made.body["key"].startswith("sk_"), made
    listed = admin.get("/api/v1/admin/apikeys?user=erin")
    assert made.body["key"] not in json.dumps(listed.body)
    assert Client(stack.url, made.body["key"]).get("/api/v1/me").body["role"] == "operator"
    erin_key = listed.body["apiKeys"][0]["id"]
    assert admin.delete(f"/api/v1/admin/apikeys/{erin_key}").status == 204
    assert Client(stack.url, made.body["key"]).get("/api/v1/me").status == 401
    assert admin.delete(f"/api/v1/admin/apikeys/{erin_key}").status == 404


def test_a_second_replica_waits_for_the_writer_and_takes_over(
    stack: Any, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    second = start_facade(DATABASE_URL=stack.database_url)
    assert second.app is not None
    from streamspace_facade.state import SERVICES  # noqa: PLC0415

    mirror = second.app[SERVICES].mirror
    assert not mirror.leader, "only one replica writes the mirror"
    via_second = Client(second.url, token("alice"))
    sid = via_second.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
    assert sid in session_ids(via_second)  # written by the other replica, awaited here
    stack.facade.stop()
    assert wait_until(mirror.ready.is_set, TIMEOUT), "the standby did not take over"
    objects.create("sessions", "after-failover", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: "after-failover" in session_ids(via_second), TIMEOUT)


def test_browsers_on_allowed_origins_only(
    stack: Any, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    facade = start_facade(
        DATABASE_URL=stack.database_url, CORS_ALLOWED_ORIGINS="https://ui.example.org"
    )
    preflight = {"Origin": "https://ui.example.org", "Access-Control-Request-Method": "POST"}
    reply = Client(facade.url).request("OPTIONS", "/api/v1/sessions", headers=preflight)
    assert reply.status == 204
    assert reply.headers["Access-Control-Allow-Origin"] == "https://ui.example.org"
    assert "Authorization" in reply.headers["Access-Control-Allow-Headers"]
    other = {**preflight, "Origin": "https://evil.example"}
    refused = Client(facade.url).request("OPTIONS", "/api/v1/sessions", headers=other)
    assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers
    alice = Client(facade.url, token("alice"))
    listed = alice.get("/api/v1/sessions", headers={"Origin": "https://ui.example.org"})
    assert listed.status == 200
    assert listed.headers["Access-Control-Allow-Origin"] == "https://ui.example.org"
    assert (
        "Access-Control-Allow-Origin"
        not in alice.get("/api/v1/sessions", headers={"Origin": "https://evil.example"}).headers
    )
