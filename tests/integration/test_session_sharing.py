"""Sharing a session, attacked (issue 19, item 3): the real facade against the real API server
and PostgreSQL. bob sees and uses alice's session only as far as she shared it, loses it at once
when she revokes it, and can never share, revoke, change, delete or transfer it himself."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import JWT_SECRET, Client, FacadeThread, WebSocket, token
from streamspace.auth.access import PARAMETER, Grant, issue, session_host, signing_key
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.integration

DOMAIN = "sessions.test"
SESSION = "alice-firefox"
SHARES = f"/api/v1/sessions/{SESSION}/shares"


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("sessions", SESSION, {"user": "alice", "template": "firefox"})
    return objects


@pytest.fixture
def facade(
    objects: Objects, database: str, start_facade: Callable[..., FacadeThread]
) -> FacadeThread:
    facade = start_facade(
        DATABASE_URL=database,
        INGRESS_DOMAIN=DOMAIN,
        SESSION_AUTH_URL="http://127.0.0.1:1/auth/session",  # the operator's concern, unused here
    )
    return facade.mirrored()


@pytest.fixture
def stream(facade: FacadeThread) -> Iterator[Callable[[str], WebSocket]]:
    opened: list[WebSocket] = []

    def open_(user: str) -> WebSocket:
        ws = WebSocket(f"{facade.url}/api/v1/ws/sessions", token=token(user)).open()
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


def gate(facade: FacadeThread, credential: str) -> int:
    """The forward-auth answer for a request to alice's session host carrying ``credential``."""
    headers = {
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": session_host(SESSION, DOMAIN),
        "Cookie": f"{PARAMETER}={credential}",
    }
    return Client(facade.url).get("/auth/session", headers=headers).status


def credential_for(facade: FacadeThread, user: str) -> str:
    """A genuine credential of ``user`` for alice's session, signed with the facade's real key
    (what bob would hold had he connected earlier, or got one some other way)."""
    namespace = facade.settings.kubernetes.namespace
    expires = datetime.now(UTC) + timedelta(minutes=5)
    return issue(signing_key(JWT_SECRET), Grant(namespace, SESSION, user, "alice", expires))


def listed(answer: Any) -> dict[str, str]:
    """Session id → the caller's access, from a list answer or a stream snapshot."""
    return {s["id"]: s["access"] for s in answer["sessions"]}


def snapshot_where(check: Callable[[dict[str, str]], bool]) -> Callable[[Any], bool]:
    def match(data: Any) -> bool:
        return data.get("type") == "sessions_update" and check(listed(data))

    return match


def audit_rows(database: str, actions: tuple[str, ...]) -> list[tuple[Any, ...]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT user_id, action, resource_id, changes FROM audit_log "
            "WHERE action = ANY(%s) ORDER BY id",
            (list(actions),),
        ).fetchall()
    return [tuple(row) for row in rows]


def test_bob_uses_alices_session_only_as_far_as_she_shares_it(
    facade: FacadeThread,
    objects: Objects,
    database: str,
    stream: Callable[[str], WebSocket],
) -> None:
    alice, bob = Client(facade.url, token("alice")), Client(facade.url, token("bob"))
    session = f"/api/v1/sessions/{SESSION}"
    bobs_credential = credential_for(facade, "bob")

    # before any share: nothing to see, connect to, or pass the gate with
    assert bob.get(session).status == 404
    assert SESSION not in listed(bob.get("/api/v1/sessions").body)
    assert SESSION not in listed(bob.get("/api/v1/sessions?user=alice").body)
    assert bob.get(f"{session}/connect").status == 404
    assert bob.get(SHARES).status == 404
    assert gate(facade, bobs_credential) == 403
    # ... nor to share, revoke, change, delete or transfer: as if it did not exist
    assert bob.post(SHARES, {"user": "bob", "access": "control"}).status == 404
    assert bob.delete(f"{SHARES}/bob").status == 404
    assert bob.patch(session, {"state": "hibernated"}).status == 404
    assert bob.delete(session).status == 404
    assert bob.post(f"{session}/transfer", {"user": "bob"}).status == 404
    watching = stream("bob")
    watching.next(snapshot_where(lambda seen: SESSION not in seen))

    # view: he sees it, with his access, in REST (the API server's and PostgreSQL's lists)
    # and in his stream; he cannot connect or pass the gate
    shared = alice.post(SHARES, {"user": "bob", "access": "view"})
    assert shared.status == 200, shared
    assert shared.body["shares"] == [{"user": "bob", "access": "view"}]
    assert bob.get(session).body["access"] == "view"
    assert listed(bob.get("/api/v1/sessions").body) == {SESSION: "view"}
    assert listed(alice.get("/api/v1/sessions").body) == {SESSION: "owner"}
    assert bob.get(SHARES).body["shares"] == [{"user": "bob", "access": "view"}]
    watching.next(snapshot_where(lambda seen: seen.get(SESSION) == "view"))
    refused = bob.get(f"{session}/connect")
    assert refused.status == 403 and refused.body["code"] == "FORBIDDEN", refused
    assert gate(facade, bobs_credential) == 403
    # still not his to share, revoke, change or delete (403 now: he knows it exists)
    assert bob.post(SHARES, {"user": "carol", "access": "view"}).status == 403
    assert bob.delete(f"{SHARES}/bob").status == 403
    assert bob.patch(session, {"state": "hibernated"}).status == 403
    assert bob.delete(session).status == 403
    assert bob.post(f"{session}/transfer", {"user": "bob"}).status == 403
    assert objects.spec(SESSION)["sharedWith"] == [{"user": "bob", "access": "view"}]

    # control: he connects, gets a credential of his own, and the gate lets it through
    assert alice.post(SHARES, {"user": "bob", "access": "control"}).status == 200
    connected = bob.get(f"{session}/connect")
    assert connected.status == 200, connected
    connection = connected.body["connectionId"]
    assert connected.body["accessToken"]
    assert gate(facade, connected.body["accessToken"]) == 200
    watching.next(snapshot_where(lambda seen: seen.get(SESSION) == "control"))
    # alice's own connection is not his to see or end
    hers = alice.get(f"{session}/connect").body["connectionId"]
    mine = bob.get(f"{session}/connections").body["connections"]
    assert [c["connectionId"] for c in mine] == [connection]
    assert bob.delete(f"{session}/disconnect?connectionId={hers}").status == 404

    # revoke: at once, his connection is gone, the gate refuses him, the session vanishes
    assert alice.delete(f"{SHARES}/bob").status == 204
    assert gate(facade, connected.body["accessToken"]) == 403
    assert objects.get("connections", connection) is None
    assert objects.get("connections", hers) is not None
    assert bob.post(f"{session}/heartbeat?connectionId={connection}").status == 404
    assert bob.get(f"{session}/connect").status == 404
    assert bob.get(session).status == 404
    assert SESSION not in listed(bob.get("/api/v1/sessions").body)
    watching.next(snapshot_where(lambda seen: SESSION not in seen))
    assert alice.delete(f"{SHARES}/bob").status == 404  # nothing left to revoke

    def audited() -> list[tuple[Any, ...]]:
        return audit_rows(database, ("share", "revoke"))

    assert wait_until(lambda: len(audited()) == 3, 30), audited()
    view, control = ({"user": "bob", "access": a, "status": 200} for a in ("view", "control"))
    assert audited() == [
        ("alice", "share", SESSION, {**view, "endedConnections": []}),
        ("alice", "share", SESSION, {**control, "endedConnections": []}),
        (
            "alice",
            "revoke",
            SESSION,
            {"user": "bob", "endedConnections": [connection], "status": 204},
        ),
    ]


def test_bad_shares_answer_422_with_the_field(facade: FacadeThread) -> None:
    alice = Client(facade.url, token("alice"))
    for body, field in (
        ({"user": "Bob!", "access": "view"}, "user"),
        ({"user": "bob", "access": "admin"}, "access"),
        ({"user": "bob"}, "access"),
        ({"user": "alice", "access": "control"}, "user"),
        ({"user": "bob", "access": "view", "expires": "never"}, "expires"),
    ):
        answer = alice.post(SHARES, body)
        assert answer.status == 422, (body, answer)
        assert field in answer.body["details"]["fields"], answer


def test_only_admins_transfer_and_only_a_sleeping_session(
    facade: FacadeThread, objects: Objects, database: str
) -> None:
    alice, bob = Client(facade.url, token("alice")), Client(facade.url, token("bob"))
    operator = Client(facade.url, token("olga", "operator"))
    admin = Client(facade.url, token("root", "admin"))
    session = f"/api/v1/sessions/{SESSION}"
    assert alice.post(SHARES, {"user": "bob", "access": "control"}).status == 200

    # the owner, a shared user and an operator may not hand it over
    for caller in (alice, bob, operator):
        answer = caller.post(f"{session}/transfer", {"user": "bob"})
        assert answer.status == 403, answer
    assert admin.post(f"{session}/transfer", {"user": "Bob"}).status == 422
    # a running session keeps its owner: its pod has alice's home mounted
    running = admin.post(f"{session}/transfer", {"user": "bob"})
    assert running.status == 409, running
    assert objects.spec(SESSION)["user"] == "alice"

    assert alice.patch(session, {"state": "hibernated"}).status == 200
    moved = admin.post(f"{session}/transfer", {"user": "bob"})
    assert moved.status == 200, moved
    assert (moved.body["user"], moved.body["access"], moved.body["sharedWith"]) == (
        "bob",
        "admin",
        [],
    )
    stored = objects.get("sessions", SESSION)
    assert stored is not None
    assert stored["spec"]["user"] == "bob" and stored["spec"].get("sharedWith") == []
    assert stored["metadata"]["labels"]["stream.space/user"] == "bob"
    assert bob.get(session).body["access"] == "owner"
    assert listed(bob.get("/api/v1/sessions").body) == {SESSION: "owner"}
    assert alice.get(session).status == 404
    assert SESSION not in listed(alice.get("/api/v1/sessions").body)

    def audited() -> list[tuple[Any, ...]]:
        return audit_rows(database, ("transfer",))

    assert wait_until(lambda: len(audited()) == 1, 30), audited()
    changes = {"from": "alice", "to": "bob", "endedConnections": [], "status": 200}
    assert audited() == [("root", "transfer", SESSION, changes)]
