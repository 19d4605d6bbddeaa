"""Input checks behind the REST API: names, repository URLs, mirror rows and request fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamspace.catalog.git import RepositoryError, normalize_url
from streamspace.db.mirror import connection_row, repository_row, session_row
from streamspace.naming import is_dns_label, is_object_name
from streamspace_facade.errors import ApiError
from streamspace_facade.sessions import new_session_name
from streamspace_facade.state import Fields, depth

pytestmark = pytest.mark.unit

UID = "0b9f6a8e-2c4d-4f7e-9a1b-3c5d7e9f1a2b"
CREATED = "2024-05-01T10:00:00Z"
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice", True),
        ("a", True),
        ("0", True),
        ("a-1", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("", False),
        ("alice\n", False),  # `$` would match before it; fullmatch must not
        ("\nalice", False),
        ("ali\x00ce", False),
        ("alice ", False),
        ("Alice", False),
        ("-alice", False),
        ("alice-", False),
        ("a.b", False),
        ("a_b", False),
        ("\u0661", False),  # a Unicode digit is not [0-9]
        ("\uff41", False),  # fullwidth letter a
    ],
)
def test_is_dns_label(value: str, expected: bool) -> None:
    assert is_dns_label(value) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("firefox", True),
        ("team.firefox-1", True),
        ("a" * 253, True),
        (".".join(["a" * 63] * 4)[:253].rstrip("."), True),
        ("a" * 254, False),
        ("", False),
        ("firefox\n", False),
        ("team.firefox\n", False),
        ("fire\x00fox", False),
        (".", False),
        ("..", False),
        (".firefox", False),
        ("firefox.", False),
        ("a..b", False),
        ("a.-b", False),
        ("a-.b", False),
        ("Firefox", False),
        ("fire fox", False),
        ("fire/fox", False),
        ("%2e", False),
    ],
)
def test_is_object_name(value: str, expected: bool) -> None:
    assert is_object_name(value) is expected


# --- repository URLs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://[", "cannot be parsed"),
        ("https://[::1/t.git", "cannot be parsed"),
        ("https://host]/t.git", "cannot be parsed"),
        ("https://host:99999/t.git", "cannot be parsed"),
        ("https://host:65536/t.git", "cannot be parsed"),
        ("https://host:-1/t.git", "cannot be parsed"),
        ("https://host:port/t.git", "cannot be parsed"),
        ("ssh://git@host:70000/t.git", "cannot be parsed"),
        ("https://host/t .git", "spaces or control characters"),
        ("https://host/t\x00.git", "spaces or control characters"),
        ("https://host/t\r.git", "spaces or control characters"),
        ("https://host/t\n.git", "spaces or control characters"),
        ("https://ho\nst/t.git", "spaces or control characters"),
        ("https://host/t\t.git", "spaces or control characters"),
        ("https://host/t\x7f.git", "spaces or control characters"),
        ("https://host/t\u2028.git", "spaces or control characters"),
        ("https://host/t\x1b[31m.git", "spaces or control characters"),
    ],
)
def test_unusable_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(RepositoryError, match=re.escape(message)):
        normalize_url(url, allow_local=False)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://host:443/t.git", "https://host:443/t.git"),
        ("https://[::1]:8443/t.git", "https://[::1]:8443/t.git"),
        ("  https://host/t.git\n", "https://host/t.git"),  # outer whitespace is trimmed
    ],
)
def test_usable_urls_are_kept(url: str, expected: str) -> None:
    assert normalize_url(url, allow_local=False) == expected


# --- mirror rows --------------------------------------------------------------------------------


def _meta(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "streamspace", "uid": UID, **extra}


def test_session_row_maps_a_full_session() -> None:
    obj = {
        "apiVersion": "stream.space/v1alpha1",
        "kind": "Session",
        "metadata": _meta(
            "alice-firefox-1a2b3c4d",
            resourceVersion="4711",
            creationTimestamp=CREATED,
            labels={"stream.space/user": "alice"},
        ),
        "spec": {
            "user": "alice",
            "template": "firefox",
            "state": "hibernated",
            "tags": ["dev", "web"],
            "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}},
            "persistentHome": False,
            "idleTimeout": "30m",
            "maxSessionDuration": "8h",
            "sharedWith": [
                {"user": "carol", "access": "control"},
                {"user": "bob", "access": "view"},
            ],
            "schedule": {"start": "0 8 * * 1-5", "timeZone": "Europe/Berlin"},
        },
        "status": {
            "phase": "Hibernated",
            "appType": "desktop",
            "activeConnections": 2,
            "url": "http://alice-firefox-1a2b3c4d.streamspace.svc:3000",
            "podName": "alice-firefox-1a2b3c4d-5d6f7-abcde",
            "lastActivity": "2024-05-01T10:05:00Z",
            "idleDeadline": "2024-05-01T10:35:00Z",
            "startedAt": "2024-05-01T10:01:00Z",
            "hibernatedAt": "2024-05-01T10:40:00Z",
            "nextStart": "2024-05-02T06:00:00Z",
            "conditions": [{"type": "Ready", "status": "False"}],
        },
    }
    at = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert session_row(obj) == {
        "uid": UID,
        "id": "alice-firefox-1a2b3c4d",
        "namespace": "streamspace",
        "user_id": "alice",
        "template_name": "firefox",
        "state": "hibernated",
        "phase": "Hibernated",
        "app_type": "desktop",
        "active_connections": 2,
        "url": "http://alice-firefox-1a2b3c4d.streamspace.svc:3000",
        "pod_name": "alice-firefox-1a2b3c4d-5d6f7-abcde",
        "tags": ["dev", "web"],
        "shared_with": [
            {"user": "bob", "access": "view"},
            {"user": "carol", "access": "control"},
        ],
        "shared_users": ["bob", "carol"],
        "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "requests": {},  # status.resources.requests: what the running workload asked for
        "persistent_home": False,
        "idle_timeout": "30m",
        "max_session_duration": "8h",
        "last_activity": at + timedelta(minutes=5),
        "idle_deadline": at + timedelta(minutes=35),
        "started_at": at + timedelta(minutes=1),
        "hibernated_at": at + timedelta(minutes=40),
        "schedule": {"start": "0 8 * * 1-5", "timeZone": "Europe/Berlin"},
        "next_start": at + timedelta(hours=20),
        "next_stop": None,
        "resource_version": "4711",
        "created_at": at,
    }


def test_session_row_defaults_for_a_fresh_session() -> None:
    before = datetime.now(UTC)
    row = session_row({"metadata": _meta("s"), "spec": {"user": "bob", "template": "t"}})
    assert row["created_at"] >= before  # no creationTimestamp yet: now
    assert {k: v for k, v in row.items() if k != "created_at"} == {
        "uid": UID,
        "id": "s",
        "namespace": "streamspace",
        "user_id": "bob",
        "template_name": "t",
        "state": "running",
        "phase": None,
        "app_type": None,
        "active_connections": 0,
        "url": None,
        "pod_name": None,
        "tags": [],
        "shared_with": [],
        "shared_users": [],
        "resources": {},
        "requests": {},
        "persistent_home": True,
        "idle_timeout": None,
        "max_session_duration": None,
        "last_activity": None,
        "idle_deadline": None,
        "started_at": None,
        "hibernated_at": None,
        "schedule": None,
        "next_start": None,
        "next_stop": None,
        "resource_version": "",
    }


def test_session_row_tolerates_null_spec_and_status() -> None:
    row = session_row({"metadata": _meta("s"), "spec": None, "status": None})
    assert (row["user_id"], row["template_name"], row["state"]) == ("", "", "running")
    assert (row["tags"], row["resources"], row["active_connections"]) == ([], {}, 0)
    assert row["persistent_home"] is True


def test_connection_row_maps_and_defaults() -> None:
    obj = {
        "metadata": _meta("alice-firefox-1a2b3c4d-9f8e7d6c", resourceVersion="12"),
        "spec": {
            "session": "alice-firefox-1a2b3c4d",
            "user": "alice",
            "clientIP": "10.0.0.7",
            "userAgent": "Mozilla/5.0",
        },
        "status": {
            "state": "idle",
            "connectedAt": "2024-05-01T10:00:00Z",
            "lastHeartbeat": "2024-05-01T10:00:30Z",
        },
    }
    row = connection_row(obj)
    at = datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert row["id"] == "alice-firefox-1a2b3c4d-9f8e7d6c"
    assert (row["session_id"], row["user_id"], row["state"]) == (
        "alice-firefox-1a2b3c4d",
        "alice",
        "idle",
    )
    assert (row["client_ip"], row["user_agent"]) == ("10.0.0.7", "Mozilla/5.0")
    assert (row["connected_at"], row["last_heartbeat"]) == (at, at + timedelta(seconds=30))
    assert row["resource_version"] == "12"

    bare = connection_row({"metadata": _meta("c"), "spec": {"session": "s", "user": "u"}})
    assert bare["state"] == "active"
    assert (bare["client_ip"], bare["user_agent"]) == (None, None)
    assert (bare["connected_at"], bare["last_heartbeat"]) == (None, None)
    assert bare["resource_version"] == ""


def test_repository_row_maps_and_defaults() -> None:
    obj = {
        "metadata": _meta("templates", resourceVersion="99", creationTimestamp=CREATED),
        "spec": {
            "url": "https://git.example.org/org/templates.git",
            "branch": "stable",
            "type": "plugin",
            "auth": {"type": "token", "secretRef": {"name": "templates-auth"}},
            "syncInterval": "1h",
            "autoInstall": True,
            "suspend": True,
        },
        "status": {
            "phase": "Ready",
            "message": "12 templates",
            "lastSyncTime": "2024-05-01T11:00:00Z",
            "lastSyncCommit": "0123abc",
            "templateCount": 12,
            "pluginCount": 1,
        },
    }
    row = repository_row(obj)
    assert row == {
        "uid": UID,
        "id": "templates",
        "namespace": "streamspace",
        "name": "templates",
        "url": "https://git.example.org/org/templates.git",
        "branch": "stable",
        "type": "plugin",
        "auth_type": "token",
        "auth_secret": "templates-auth",
        "sync_interval": "1h",
        "auto_install": True,
        "suspend": True,
        "status": "synced",
        "message": "12 templates",
        "last_sync": datetime(2024, 5, 1, 11, tzinfo=UTC),
        "last_sync_commit": "0123abc",
        "template_count": 12,
        "plugin_count": 1,
        "resource_version": "99",
        "created_at": datetime(2024, 5, 1, 10, tzinfo=UTC),
    }

    bare = repository_row({"metadata": _meta("r"), "spec": {"url": "https://h/r.git"}})
    assert (bare["branch"], bare["type"], bare["auth_type"], bare["auth_secret"]) == (
        "main",
        "template",
        "none",
        None,
    )
    assert (bare["auto_install"], bare["suspend"], bare["status"]) == (False, False, "pending")
    assert (bare["template_count"], bare["plugin_count"], bare["last_sync"]) == (0, 0, None)


@pytest.mark.parametrize(
    ("phase", "word"),
    [("Pending", "pending"), ("Syncing", "syncing"), ("Ready", "synced"), ("Failed", "failed"),
     (None, "pending"), ("Unheard-of", "pending")],
)  # fmt: skip
def test_repository_status_words(phase: str | None, word: str) -> None:
    obj = {"metadata": _meta("r"), "spec": {}, "status": {"phase": phase}}
    assert repository_row(obj)["status"] == word


# --- request fields -----------------------------------------------------------------------------


def _problems(fields: Fields) -> dict[str, str]:
    with pytest.raises(ApiError) as caught:
        fields.done()
    assert caught.value.status == 422 and caught.value.code == "VALIDATION_FAILED"
    problems: dict[str, str] = caught.value.details["fields"]
    return problems


def test_fields_accept_a_good_body() -> None:
    fields = Fields(
        {"name": "x", "count": 3, "on": False, "tags": ["a"]},
        {"name", "count", "on", "tags", "spare"},
    )
    assert fields.get("name", str, required=True) == "x"
    assert fields.get("count", int) == 3
    assert fields.get("on", bool) is False
    assert fields.get("tags", list) == ["a"]
    assert fields.get("spare", str) is None
    fields.done()  # nothing to complain about


def test_fields_report_every_unknown_field() -> None:
    fields = Fields({"name": "x", "nmae": "y", "__proto__": {}}, {"name"}, where="spec.")
    assert fields.get("name", str) == "x"
    assert _problems(fields) == {"spec.nmae": "unknown field", "spec.__proto__": "unknown field"}


@pytest.mark.parametrize(
    ("value", "kind", "problem"),
    [
        (True, int, "must be an integer"),  # bool is an int subclass; not here
        (False, int, "must be an integer"),
        (1, bool, "must be a boolean"),
        (0, bool, "must be a boolean"),
        ("true", bool, "must be a boolean"),
        (1.5, int, "must be an integer"),
        ("3", int, "must be an integer"),
        (3, str, "must be a string"),
        ({"a": 1}, list, "must be a list"),
        (["a"], dict, "must be an object"),
        (True, (str, int), "must be a string or an integer"),
    ],
)
def test_fields_reject_wrong_types(value: Any, kind: Any, problem: str) -> None:
    fields = Fields({"x": value}, {"x"})
    assert fields.get("x", kind) is None
    assert _problems(fields) == {"x": problem}


def test_fields_take_bool_where_bool_is_allowed() -> None:
    fields = Fields({"x": True}, {"x"})
    assert fields.get("x", (bool, int)) is True
    fields.done()


@pytest.mark.parametrize("value", ["\x00", "a\x00b", "name\x00"])
def test_fields_reject_nul(value: str) -> None:
    fields = Fields({"x": value}, {"x"})
    assert fields.get("x", str, check=lambda _: None) is None
    assert _problems(fields) == {"x": "must not contain NUL characters"}


@pytest.mark.parametrize("body", [{}, {"x": None}])
def test_fields_required(body: dict[str, Any]) -> None:
    fields = Fields(body, {"x"})
    assert fields.get("x", str, required=True) is None
    assert _problems(fields) == {"x": "required"}


def test_fields_optional_missing_or_null_is_fine() -> None:
    fields = Fields({"x": None}, {"x", "y"})
    assert fields.get("x", str) is None and fields.get("y", int) is None
    fields.done()


def test_fields_check_and_fail_collect_all_problems() -> None:
    fields = Fields({"user": "Alice\n", "count": True, "bogus": 1}, {"user", "count"})
    user = fields.get("user", str, check=lambda u: None if is_dns_label(u) else "bad user")
    assert user is None
    assert fields.get("count", int) is None
    fields.fail("other", "explained")
    problems = _problems(fields)
    assert problems == {
        "bogus": "unknown field",
        "user": "bad user",
        "count": "must be an integer",
        "other": "explained",
    }


# --- generated session names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "firefox",
        "a" * 253,
        "b" * 179 + "." + "c" * 73,  # the cut falls right after a dot
        "b" * 179 + "-" + "c" * 73,  # ... or a dash
        ".".join(["x" * 63] * 4)[:253].rstrip("."),
        "-".join(["y"] * 127),
        ".".join(["z"] * 127),
    ],
)
@pytest.mark.parametrize("user", ["a", "u" * 63, "a-b"])
def test_new_session_name_is_a_valid_object_name(user: str, template: str) -> None:
    assert is_dns_label(user) and is_object_name(template)
    name = new_session_name(user, template)
    assert len(name) <= 253, len(name)
    assert is_object_name(name) and SUBDOMAIN.fullmatch(name), name
    assert name.startswith(f"{user}-")
    assert re.fullmatch(r"[0-9a-f]{8}", name.rsplit("-", 1)[1])
    if len(user) + len(template) <= 253 - 10:
        assert name[len(user) + 1 : -9] == template  # short enough: kept whole


def test_new_session_name_uses_the_whole_room_at_the_limit() -> None:
    name = new_session_name("u" * 63, "t" * 253)
    assert len(name) == 253
    assert new_session_name("u" * 63, "t" * 253) != name  # a fresh suffix every time


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        (1, 0),
        ("x", 0),
        ({}, 1),
        ([], 1),
        ({"a": [1, {"b": []}]}, 4),
        ([[[[]]], []], 4),
    ],
)
def test_body_depth_is_counted_without_recursion(value: object, levels: int) -> None:
    assert depth(value) == levels


def test_body_depth_of_a_very_deep_value() -> None:
    deep: list[object] = []
    for _ in range(100_000):  # far past the interpreter's recursion limit
        deep = [deep]
    assert depth(deep) == 100_001
