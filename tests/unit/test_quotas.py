"""SessionQuota decisions: selection, usage from Session objects, the admission order, and what
``lifecycle.decide`` does with a held session. Pure, no I/O."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from streamspace.lifecycle import Observed, SessionInput, decide
from streamspace.manifests import WorkloadOptions
from streamspace.quotas import (
    QUOTA_EXCEEDED,
    Excess,
    Quota,
    Sizing,
    Usage,
    admit,
    as_wanted,
    consuming,
    need,
    refusal,
    select,
)

pytestmark = pytest.mark.unit

TEMPLATES = {"big": {"requests": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}}}
SIZING = Sizing(lambda name: TEMPLATES.get(name, {}), home_size="10Gi")


def quota(name: str, *, users: Any = (), groups: Any = (), default: bool = False, **limits: Any):
    spec = {"users": list(users), "groups": list(groups), "default": default, "limits": limits}
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def session(
    name: str,
    *,
    state: str = "running",
    phase: str | None = None,
    created: str = "2026-12-01T00:00:00Z",
    held: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase:
        status["phase"] = phase
    if held:
        status["conditions"] = [{"type": QUOTA_EXCEEDED, "status": "True"}]
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
        },
        "spec": {"user": "alice", "template": "small", "state": state, **spec},
        "status": status,
    }


@pytest.mark.parametrize(
    ("user", "groups", "expected"),
    [
        ("alice", ["dev"], "by-user"),  # user over group over default
        ("bob", ["dev"], "a-group"),  # two group quotas: the first name wins
        ("carol", [], "everyone"),
        ("carol", ["ops"], "everyone"),
    ],
)
def test_most_specific_quota_wins(user: str, groups: list[str], expected: str) -> None:
    found = [
        quota("everyone", default=True, sessions=1),
        quota("z-group", groups=["dev"], sessions=2),
        quota("a-group", groups=["dev", "qa"], sessions=3),
        quota("by-user", users=["alice"], sessions=4),
    ]
    chosen = select(found, user, groups)
    assert chosen is not None and chosen.name == expected


def test_no_quota_selects_nobody_without_a_default() -> None:
    assert select([quota("q", users=["alice"], sessions=1)], "bob", ["dev"]) is None


def test_need_resolves_resources_as_the_operator_does() -> None:
    running = need(session("s", template="big"), SIZING, running=True)
    assert (running.cpu, running.memory, running.gpus) == (Decimal(2), Decimal(4 * 1024**3), 1)
    own = need(session("s", template="big", resources={"cpu": "500m"}), SIZING, running=True)
    assert own.cpu == Decimal("0.5") and own.memory == 4 * 1024**3  # per key: session first
    default = need(session("s"), SIZING, running=True)
    assert default.cpu == Decimal("0.25") and default.memory == 512 * 1024**2
    hibernated = need(session("s", state="hibernated"), SIZING, running=False)
    assert hibernated == Usage(sessions=1, storage=Decimal(10 * 1024**3))
    assert need(session("s", persistentHome=False), SIZING, running=False).storage == 0
    assert need(session("s", state="terminated"), SIZING, running=True) == Usage()


def test_a_running_session_counts_what_its_workload_started_with() -> None:
    running = session("s", phase="Running", template="big")
    running["status"]["resources"] = {"requests": {"cpu": "3", "memory": "1Gi"}}
    started = need(running, SIZING, running=True)
    assert (started.cpu, started.memory, started.gpus) == (3, 1024**3, 0)
    woken = {**running, "status": {**running["status"], "phase": "Hibernated"}}
    assert need(woken, SIZING, running=True).cpu == 2  # starts again from the template


def test_storage_is_one_home_volume_per_user() -> None:
    two = need(session("a"), SIZING, running=False) + need(session("b"), SIZING, running=False)
    assert two.sessions == 2 and two.storage == 10 * 1024**3


def test_consuming_means_started_not_held() -> None:
    assert consuming(session("s", phase="Running"))
    assert consuming(session("s", phase="Pending"))
    assert not consuming(session("s"))  # new: no status yet
    assert not consuming(session("s", phase="Pending", held=True))
    assert not consuming(session("s", phase="Hibernated"))  # being woken
    assert not consuming(session("s", state="hibernated", phase="Running"))


def test_admission_is_oldest_first_and_never_stops_what_runs() -> None:
    q = Quota.from_body(quota("q", users=["alice"], runningSessions=2))
    sessions = [
        session("running-1", phase="Running", created="2026-12-01T00:00:05Z"),
        session("new-b", created="2026-12-01T00:00:02Z"),
        session("new-a", created="2026-12-01T00:00:02Z"),
        session("new-c", created="2026-12-01T00:00:01Z"),
        session("sleeping", state="hibernated", phase="Hibernated"),
    ]
    result = admit(q, sessions, SIZING)
    assert result.admitted == {"new-c"}  # the oldest; then the name orders equals
    assert set(result.held) == {"new-a", "new-b"}
    assert result.held["new-a"] == Excess("q", "runningSessions", 3, 2)
    lowered = Quota.from_body(quota("q", users=["alice"], runningSessions=0))
    assert admit(lowered, sessions[:1], SIZING).held == {}  # running-1 keeps running


def test_admission_checks_every_limit() -> None:
    q = Quota.from_body(quota("q", default=True, cpu="3", sessions=3, storage="5Gi"))
    big = session("big", template="big", created="2026-12-01T00:00:01Z", persistentHome=False)
    small = session("small", created="2026-12-01T00:00:02Z", persistentHome=False)
    assert admit(q, [big, small], SIZING).admitted == {"big", "small"}  # 2 + 0.25 cpu
    too_much = session("more", template="big", created="2026-12-01T00:00:03Z", persistentHome=False)
    held = admit(q, [big, small, too_much], SIZING).held["more"]
    assert (held.resource, held.used, held.allowed) == ("cpu", "4250m", "3")
    homed = admit(q, [session("home")], SIZING).held["home"]
    assert (homed.resource, homed.used, homed.allowed) == ("storage", "10Gi", "5Gi")


def test_a_wake_waits_behind_nothing_it_is_not_older_than() -> None:
    q = Quota.from_body(quota("q", default=True, runningSessions=1))
    sleeping = session("sleeping", state="hibernated", phase="Hibernated")
    running = session("running", phase="Running")
    woken = as_wanted(sleeping, "running")
    assert admit(q, [running, woken], SIZING).held["sleeping"].resource == "runningSessions"
    assert admit(q, [woken], SIZING).admitted == {"sleeping"}


def test_a_request_may_not_push_back_a_session_already_admitted() -> None:
    q = Quota.from_body(quota("q", default=True, runningSessions=1))
    older = session("older", state="hibernated", phase="Hibernated", created="2026-12-01T00:00:01Z")
    younger = session("younger", created="2026-12-01T00:00:02Z")  # admitted, not started yet
    # in the order the older one would come first, but the younger one was told it may run
    assert admit(q, [as_wanted(older, "running"), younger], SIZING).admitted == {"older"}
    over = refusal(q, [older, younger], as_wanted(older, "running"), SIZING)
    assert over == Excess("q", "runningSessions", 2, 1)
    new = {"metadata": {"name": ""}, "spec": {"user": "alice", "template": "small"}}
    assert refusal(q, [older], new, SIZING) is None
    hibernated = {**new, "spec": {**new["spec"], "state": "hibernated"}}
    limited = Quota.from_body(quota("q", default=True, sessions=1))
    assert refusal(limited, [older], hibernated, SIZING) == Excess("q", "sessions", 2, 1)


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TEMPLATE = {"spec": {"baseImage": "img", "vnc": {"enabled": True, "port": 3000}}}
OPTS = WorkloadOptions(default_resources={})
HOLD = Excess("q", "runningSessions", 3, 2)


def test_a_held_session_gets_no_workload_one_event_and_is_let_go() -> None:
    first = decide(SessionInput.from_body(session("s")), TEMPLATE, Observed(), NOW, OPTS, hold=HOLD)
    assert first.apply == [] and first.ensure_home is None and first.scale_to is None
    assert first.status["phase"] == "Pending"
    cond = {c["type"]: c for c in first.status["conditions"]}[QUOTA_EXCEEDED]
    assert cond["status"] == "True" and "allowed 2" in cond["message"]
    assert [e.reason for e in first.events] == [QUOTA_EXCEEDED]
    held = {**session("s"), "status": first.status}
    again = decide(SessionInput.from_body(held), TEMPLATE, Observed(), NOW, OPTS, hold=HOLD)
    assert again.events == [] and again.status == first.status
    freed = decide(SessionInput.from_body(held), TEMPLATE, Observed(), NOW, OPTS, hold=None)
    assert any(m["kind"] == "Deployment" for m in freed.apply)
    cond = {c["type"]: c for c in freed.status["conditions"]}[QUOTA_EXCEEDED]
    assert cond["status"] == "False"
    never = decide(SessionInput.from_body(session("t")), TEMPLATE, Observed(), NOW, OPTS)
    assert QUOTA_EXCEEDED not in {c["type"] for c in never.status["conditions"]}
