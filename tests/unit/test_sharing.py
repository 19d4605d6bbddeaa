"""Who may do what with a session (``streamspace.sharing``), and the gate judging by the
session's current spec rather than by what a credential said when it was issued."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamspace import sharing
from streamspace.auth.access import Grant, issue, judge, session_host, signing_key

pytestmark = pytest.mark.unit

CRD = Path(__file__).resolve().parents[2] / "crds" / "session.yaml"

SPEC: dict[str, Any] = {
    "user": "alice",
    "sharedWith": [{"user": "bob", "access": "view"}, {"user": "carol", "access": "control"}],
}

ACCESS = {
    "the owner": ("alice", "owner"),
    "a view share": ("bob", "view"),
    "a control share": ("carol", "control"),
    "anyone else": ("mallory", None),
    "nobody": ("", None),
}


@pytest.mark.parametrize(("user", "access"), ACCESS.values(), ids=ACCESS)
def test_access_of(user: str, access: str | None) -> None:
    assert sharing.access_of(SPEC, user) == access


ALLOWS = [
    (None, "view", False),
    ("view", "view", True),
    ("view", "control", False),
    ("control", "control", True),
    ("control", "owner", False),
    ("owner", "control", True),
    ("admin", "view", False),  # the role is the facade's to weigh, not a level of access
]


@pytest.mark.parametrize(("access", "need", "allowed"), ALLOWS)
def test_allows(access: str | None, need: str, allowed: bool) -> None:
    assert sharing.allows(access, need) is allowed


def test_shared_with_adds_changes_and_removes_in_a_stable_order() -> None:
    added = sharing.shared_with(SPEC, "aaron", "view")
    assert [s["user"] for s in added] == ["aaron", "bob", "carol"]
    changed = sharing.shared_with(SPEC, "bob", "control")
    assert {"user": "bob", "access": "control"} in changed and len(changed) == 2
    assert sharing.shared_with(SPEC, "carol", None) == [{"user": "bob", "access": "view"}]
    assert sharing.shared_with({"user": "alice"}, "nobody", None) == []


LOST = {
    "revoking a control share": ({**SPEC, "sharedWith": SPEC["sharedWith"][:1]}, {"carol"}),
    "control lowered to view": (
        {**SPEC, "sharedWith": sharing.shared_with(SPEC, "carol", "view")},
        {"carol"},
    ),
    "revoking a view share": ({**SPEC, "sharedWith": SPEC["sharedWith"][1:]}, set()),
    "a transfer": ({**SPEC, "user": "dave"}, {"alice"}),
    "a transfer to a control share": (
        {"user": "carol", "sharedWith": SPEC["sharedWith"][:1]},
        {"alice"},
    ),
    "nothing changed": (SPEC, set()),
}


@pytest.mark.parametrize(("after", "lost"), LOST.values(), ids=LOST)
def test_lost_control(after: dict[str, Any], lost: set[str]) -> None:
    assert sharing.lost_control(SPEC, after) == lost


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = signing_key("a-secret-of-at-least-thirty-two-characters")
DOMAIN = "sessions.example.com"
SESSION = "alice-firefox-1a2b3c4d"
HOST = session_host(SESSION, DOMAIN)


def _grant(user: str) -> Grant:
    return Grant("streamspace", SESSION, user, "alice", NOW + timedelta(minutes=5))


GATE = {
    "the owner": ("alice", SPEC, 200),
    "a control share": ("carol", SPEC, 200),
    "a view share": ("bob", SPEC, 403),
    "a revoked control share": ("carol", {"user": "alice"}, 403),
    "the owner after a transfer": ("alice", {"user": "dave"}, 403),
    "the session is gone": ("alice", None, 403),
}


@pytest.mark.parametrize(("user", "spec", "status"), GATE.values(), ids=GATE)
def test_the_gate_judges_by_the_current_spec(
    user: str, spec: dict[str, Any] | None, status: int
) -> None:
    grant = _grant(user)
    looked_up: list[Grant] = []

    def current(asked: Grant) -> dict[str, Any] | None:
        looked_up.append(asked)
        return spec

    verdict = judge(KEY, issue(KEY, grant), HOST, DOMAIN, NOW, current=current)
    assert verdict.status == status, verdict.reason
    assert looked_up == [grant]


def test_the_levels_and_the_limit_are_the_crds() -> None:
    """crds/ is the source of truth: the REST checks use the same enum and maxItems."""
    crd = yaml.safe_load(CRD.read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    shared = spec["properties"]["sharedWith"]
    assert shared["maxItems"] == sharing.MAX_SHARES
    assert tuple(shared["items"]["properties"]["access"]["enum"]) == sharing.SHARED
    assert shared["x-kubernetes-list-map-keys"] == ["user"]
