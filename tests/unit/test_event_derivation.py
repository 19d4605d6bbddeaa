"""Plugin events decided purely: row changes → event types (docs/PLUGINS.md §4), subscriptions,
the CloudEvent body and its Standard Webhooks signature, retries with full jitter."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streamspace import events
from streamspace.db.outbox import plain_view
from streamspace.plugins import secret as plugin_secret

pytestmark = pytest.mark.unit

T1 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
T2 = T1 + timedelta(minutes=5)


def session(
    phase: str | None, started: datetime | None = None, hibernated: datetime | None = None
) -> dict[str, Any]:
    return {
        "id": "s1",
        "namespace": "ns",
        "phase": phase,
        "started_at": started,
        "hibernated_at": hibernated,
    }


def connection(state: str) -> dict[str, Any]:
    return {"id": "c1", "namespace": "ns", "state": state}


def repo(status: str, last_sync: datetime | None = None) -> dict[str, Any]:
    return {"id": "r1", "namespace": "ns", "status": status, "last_sync": last_sync}


def plugin(enabled: bool) -> dict[str, Any]:
    return {"id": "p1", "namespace": "ns", "enabled": enabled}


# (table, old row, new row) → events, in order
def user(
    login: datetime | None = None, groups: list[str] | None = None, disabled: bool = False
) -> dict[str, Any]:
    return {"id": "alice", "namespace": "ns", "role": "user", "email": None, "name": None,
            "idp_groups": [], "groups": groups or [], "disabled": disabled, "last_login": login}  # fmt: skip


CASES: list[tuple[str, str, dict[str, Any] | None, dict[str, Any] | None, list[str]]] = [
    ("new session", "sessions", None, session(None), ["session.created"]),
    ("pending → running", "sessions", session("Pending"), session("Running"), ["session.started"]),
    ("created and started while down", "sessions", None, session("Running"),
     ["session.created", "session.started"]),
    ("hibernated", "sessions", session("Running"), session("Hibernated"), ["session.hibernated"]),
    ("woken", "sessions", session("Hibernated"), session("Running"), ["session.woken"]),
    ("woken through Pending", "sessions", session("Pending", T1, T2), session("Running", T2, T2),
     ["session.woken"]),
    ("restarted after a failure, hibernated long ago", "sessions",
     session("Failed", T2, T1), session("Running", T2, T1), ["session.started"]),
    ("hibernated in the second it started, woken", "sessions", session("Pending", T1, T1),
     session("Running", T2, T1), ["session.woken"]),
    ("created hibernated, then running", "sessions", session("Pending", None, T1),
     session("Running", T2, T1), ["session.woken"]),
    ("pending after waking: nothing yet", "sessions", session("Hibernated", T1, T2),
     session("Pending", T1, T2), []),
    ("hibernating → hibernated", "sessions", session("Hibernating"), session("Hibernated"),
     ["session.hibernated"]),
    ("terminated", "sessions", session("Running"), session("Terminated"), ["session.stopped"]),
    ("failed", "sessions", session("Pending"), session("Failed"), ["session.stopped"]),
    ("failed after terminated: once", "sessions", session("Terminated"), session("Failed"), []),
    ("same phase, other fields", "sessions", session("Running"), session("Running"), []),
    ("running → pending: nothing", "sessions", session("Running"), session("Pending"), []),
    ("deleted", "sessions", session("Running"), None, ["session.deleted"]),
    ("nothing at all", "sessions", None, None, []),
    ("opened", "connections", None, connection("active"), ["connection.opened"]),
    ("opened and closed while down", "connections", None, connection("closed"),
     ["connection.opened", "connection.closed"]),
    ("closed", "connections", connection("active"), connection("closed"), ["connection.closed"]),
    ("row goes", "connections", connection("active"), None, ["connection.closed"]),
    ("closed row goes: once", "connections", connection("closed"), None, []),
    ("heartbeat", "connections", connection("active"), connection("active"), []),
    ("first sync", "repositories", repo("syncing"), repo("synced", T1), ["repository.synced"]),
    ("synced again", "repositories", repo("synced", T1), repo("synced", T2),
     ["repository.synced"]),
    ("unchanged", "repositories", repo("synced", T1), repo("synced", T1), []),
    ("new repository, synced", "repositories", None, repo("synced", T1), ["repository.synced"]),
    ("synced without a time", "repositories", repo("pending"), repo("synced"), []),
    ("failed", "repositories", repo("syncing", T1), repo("failed", T1), ["repository.failed"]),
    ("still failed", "repositories", repo("failed"), repo("failed"), []),
    ("repository removed", "repositories", repo("synced", T1), None, []),
    ("installed", "installed_plugins", None, plugin(True), ["plugin.installed"]),
    ("disabled", "installed_plugins", plugin(True), plugin(False), ["plugin.disabled"]),
    ("enabled", "installed_plugins", plugin(False), plugin(True), ["plugin.enabled"]),
    ("uninstalled", "installed_plugins", plugin(True), None, ["plugin.uninstalled"]),
    ("user first seen", "users", None, user(), ["user.created"]),
    ("user first seen at a sign-in", "users", None, user(login=T1),
     ["user.created", "user.login"]),
    ("user signs in", "users", user(login=T1), user(login=T2), ["user.login"]),
    ("user's groups change", "users", user(), user(groups=["a"]), ["user.updated"]),
    ("user disabled", "users", user(), user(disabled=True), ["user.updated"]),
    ("user seen again, nothing new", "users", user(login=T1), user(login=T1), []),
    ("user deleted", "users", user(), None, ["user.deleted"]),
    ("unknown table", "teams", None, {"id": "u"}, []),
]  # fmt: skip


@pytest.mark.parametrize(("table", "old", "new", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_derive(
    table: str, old: dict[str, Any] | None, new: dict[str, Any] | None, expected: list[str]
) -> None:
    assert events.derive(table, old, new) == expected
    assert set(expected) <= set(events.EVENT_TYPES)


@pytest.mark.parametrize(
    ("patterns", "event_type", "expected"),
    [
        (["session.created"], "session.created", True),
        (["session.*"], "session.hibernated", True),
        (["space.stream.session.*"], "session.woken", True),
        (["*"], "plugin.enabled", True),
        (["session.*"], "connection.opened", False),
        (["session.create"], "session.created", False),
        (["session.created*"], "session.created", True),
        ([], "session.created", False),
    ],
)
def test_subscribed(patterns: list[str], event_type: str, expected: bool) -> None:
    assert events.subscribed(patterns, event_type) is expected


def test_recipients_are_subscribers_of_the_objects_namespace() -> None:
    a = events.Subscriber("u1", "ns", "a", ["session.*"], "https://a")
    b = events.Subscriber("u2", "other", "b", ["session.*"], "https://b")
    c = events.Subscriber("u3", "ns", "c", ["connection.*"], "https://c")
    assert events.recipients([a, b, c], "session.created", "ns") == [a]
    # a facade serving every namespace: its own namespace's plugins hear all of them
    home = events.Subscriber("u4", "streamspace", "h", ["session.*"], "https://h")
    assert events.recipients([a, b, home], "session.created", "ns", "streamspace") == [a, home]
    assert events.recipients([a, b, home], "session.created", "other", "streamspace") == [b, home]
    assert events.recipients([a, b, home], "session.created", "other") == [b]


def test_subject() -> None:
    assert events.subject("sessions", session(None)) == "sessions/s1"
    assert events.subject("installed_plugins", plugin(True)) == "plugins/p1"


def test_envelope_is_structured_cloudevents_json() -> None:
    body, content_type = events.envelope(
        "3f0c1c52-0d6c-4a37-8bb9-1ac1b9a39a85",
        "session.created",
        "sessions/s1",
        "ns",
        T1,
        {"id": "s1", "phase": "Pending"},
    )
    assert content_type == "application/cloudevents+json"
    got = json.loads(body)
    assert got == {
        "specversion": "1.0",
        "id": "3f0c1c52-0d6c-4a37-8bb9-1ac1b9a39a85",
        "source": "/streamspace/ns",
        "type": "space.stream.session.created",
        "subject": "sessions/s1",
        "time": got["time"],
        "datacontenttype": "application/json",
        "data": {"id": "s1", "phase": "Pending"},
    }
    assert datetime.fromisoformat(got["time"].replace("Z", "+00:00")) == T1


SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_signature_verifies_with_standardwebhooks() -> None:
    body = b'{"id":"x"}'
    now = datetime.now(UTC)
    headers = events.signature_headers(SECRET, "msg_1", now, body)
    assert headers["webhook-id"] == "msg_1"
    assert headers["webhook-timestamp"] == str(int(now.timestamp()))
    assert Webhook(SECRET).verify(body, headers) == {"id": "x"}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"id":"y"}', headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUJD" * 8).verify(body, headers)


POLICY = events.RetryPolicy(timedelta(seconds=1), timedelta(seconds=60), budget=5)


@pytest.mark.parametrize(
    ("attempts", "draw", "status", "wait"),
    [
        (1, 0.5, "pending", 0.5),  # ceiling 1 s
        (2, 0.5, "pending", 1.0),  # 2 s
        (3, 0.999, "pending", 3.996),  # 4 s
        (4, 0.0, "pending", 0.0),  # full jitter may go at once
        (5, 0.5, "dead", None),  # the budget is spent
        (9, 0.5, "dead", None),
    ],
)
def test_after_failure(attempts: int, draw: float, status: str, wait: float | None) -> None:
    outcome = events.after_failure(POLICY, attempts, T1, lambda: draw)
    assert outcome.status == status
    if wait is None:
        assert outcome.next_attempt_at is None
    else:
        assert outcome.next_attempt_at == T1 + timedelta(seconds=wait)


def test_backoff_is_capped() -> None:
    policy = events.RetryPolicy(timedelta(seconds=1), timedelta(seconds=60), budget=100)
    outcome = events.after_failure(policy, 30, T1, lambda: 0.999)
    assert outcome.next_attempt_at == T1 + timedelta(seconds=59.94)


def test_delivered_is_2xx() -> None:
    assert [events.delivered(s) for s in (200, 204, 299, 300, 404, 500)] == [
        True, True, True, False, False, False,
    ]  # fmt: skip


def test_secret_must_be_owned_by_the_plugin() -> None:
    def secret(*refs: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"name": "plugin-p1", "ownerReferences": list(refs)}}

    owned_by = plugin_secret.owned_by
    assert owned_by(secret({"kind": "Plugin", "uid": "u1", "controller": True}), "u1")
    assert not owned_by(secret({"kind": "Plugin", "uid": "u1"}), "u1")  # not its controller
    assert not owned_by(secret({"kind": "Plugin", "uid": "u0", "controller": True}), "u1")
    assert not owned_by(secret({"kind": "Session", "uid": "u1", "controller": True}), "u1")
    assert not owned_by(secret(), "u1")
    assert not owned_by({"metadata": {}}, "u1")


def test_plain_view() -> None:
    row = {"uid": "x", "id": "p1", "last_sync": T1, "resource_version": "5", "tags": ("a",)}
    assert plain_view(row) == {"id": "p1", "lastSync": "2026-12-02T08:00:00Z", "tags": ["a"]}
