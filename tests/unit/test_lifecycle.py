"""The Session state machine: table-driven cases of ``decide`` (inputs → plan), no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamspace.conditions import timestamp
from streamspace.lifecycle import (
    Observed,
    PodView,
    SessionInput,
    decide,
    revives,
    status_changed,
)
from streamspace.manifests import WorkloadOptions

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
OPTS = WorkloadOptions(default_resources={"requests": {"cpu": "250m"}})
TEMPLATE = {
    "metadata": {"name": "firefox"},
    "spec": {
        "baseImage": "lscr.io/linuxserver/firefox:latest",
        "kasmvnc": {"enabled": True, "port": 3000},
        "defaultResources": {"memory": "2Gi", "cpu": "1000m"},
    },
}
NO_PORT_TEMPLATE = {
    "metadata": {"name": "firefox"},
    "spec": {"baseImage": "x", "vnc": {"enabled": False}},
}
POD = PodView("s1-abc-123", ready=True, terminating=False)


SESSION_UID = "uid-1"


def child(kind: str, owner: str | None = SESSION_UID, **fields: Any) -> dict[str, Any]:
    """An object found under the children's name, controlled by ``owner`` (None: by nobody)."""
    refs = [] if owner is None else [{"kind": "Session", "uid": owner, "controller": True}]
    meta = {"name": "s1", "uid": f"{kind.lower()}-uid", "ownerReferences": refs}
    return {"kind": kind, "metadata": meta, **fields}


def deployment(
    replicas: int, available: int = 0, owner: str | None = SESSION_UID
) -> dict[str, Any]:
    return child(
        "Deployment",
        owner,
        spec={"replicas": replicas},
        status={"availableReplicas": available},
    )


def seen(
    deployment: dict[str, Any] | None = None,
    service: bool | dict[str, Any] = False,
    ingress: bool | dict[str, Any] = False,
    pods: tuple[PodView, ...] = (),
    network_policy: bool | dict[str, Any] = False,
) -> Observed:
    """What the operator observes: ``True`` is a child of the session, a dict any object."""
    found: dict[str, dict[str, Any] | None] = {"Deployment": deployment}
    for kind, value in (
        ("Service", service),
        ("Ingress", ingress),
        ("NetworkPolicy", network_policy),
    ):
        found[kind] = child(kind) if value is True else (value or None)
    return Observed.of(SESSION_UID, found, pods)


def session(state: str = "running", **status: Any) -> SessionInput:
    return SessionInput(
        name="s1",
        namespace="ns",
        uid="uid-1",
        generation=2,
        spec={"user": "alice", "template": "firefox", "state": state, "maxSessionDuration": "8h"},
        status=status,
    )


@dataclass
class Case:
    session: SessionInput
    template: dict[str, Any] | None
    observed: Observed
    phase: str
    applies: list[str] = field(default_factory=list)
    scale_to: int | None = None
    deletes: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    home: bool = False
    spec_patch: dict[str, Any] | None = None


CASES = {
    "missing template waits": Case(session(), None, seen(), "Pending", events=["TemplateNotFound"]),
    "missing template, already reported": Case(
        session(phase="Pending", conditions=[{"type": "Ready"}]), None, seen(), "Pending"
    ),
    "invalid template fails": Case(
        session(), NO_PORT_TEMPLATE, seen(), "Failed", events=["TemplateInvalid"]
    ),
    "new session creates children": Case(
        session(),
        TEMPLATE,
        seen(),
        "Pending",
        applies=["NetworkPolicy", "Deployment", "Service"],
        home=True,
    ),
    "pod ready: running": Case(
        session(phase="Pending"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        events=["Started"],
    ),
    "still running: nothing to do": Case(
        session(phase="Running", startedAt=timestamp(NOW - timedelta(hours=1))),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
    ),
    "available but pod terminating: pending": Case(
        session(phase="Running", startedAt=timestamp(NOW)),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(PodView("p", True, True),)),
        "Pending",
    ),
    "max duration exceeded": Case(
        session(phase="Running", startedAt=timestamp(NOW - timedelta(hours=8))),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        events=["MaxDurationExceeded"],
        spec_patch={"state": "terminated"},
    ),
    "hibernate: scale down, wait for pods": Case(
        session("hibernated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        scale_to=0,
    ),
    "hibernate: pods gone": Case(
        session("hibernated", phase="Running"),
        TEMPLATE,
        seen(deployment(0), service=True, network_policy=True),
        "Hibernated",
        events=["Hibernated"],
    ),
    "hibernated, missing template: still fine": Case(
        session("hibernated", phase="Hibernated"), None, seen(deployment(0)), "Hibernated"
    ),
    "wake from hibernation": Case(
        session(phase="Hibernated"),
        TEMPLATE,
        seen(deployment(0), service=True, network_policy=True),
        "Pending",
        applies=["Deployment"],
        home=True,
        events=["Woken"],
    ),
    "stray replica count is corrected": Case(
        session(phase="Running"),
        TEMPLATE,
        seen(deployment(3, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        scale_to=1,
    ),
    "terminate: delete children": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        deletes=["Deployment", "Service", "NetworkPolicy"],
    ),
    "terminated: nothing left": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        seen(),
        "Terminated",
        events=["Terminated"],
    ),
    "terminated stays quiet": Case(
        session("terminated", phase="Terminated"), None, seen(), "Terminated"
    ),
    # Same-named objects the session does not control: report, touch nothing (issue 13 item 3).
    "unowned deployment: running adopts nothing": Case(
        session(), TEMPLATE, seen(deployment(0, owner=None)), "Failed", events=["NameConflict"]
    ),
    "deployment of another owner: running adopts nothing": Case(
        session(phase="Pending"),
        TEMPLATE,
        seen(deployment(1, 1, owner="other-uid"), service=True, pods=(POD,)),
        "Failed",
        events=["NameConflict"],
    ),
    "foreign service next to our deployment: nothing applied": Case(
        session(phase="Pending"),
        TEMPLATE,
        seen(deployment(1, 1), service=child("Service", owner=None), pods=(POD,)),
        "Failed",
        events=["NameConflict"],
    ),
    "foreign deployment: hibernated scales nothing": Case(
        session("hibernated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1, owner=None), pods=(POD,)),
        "Failed",
        events=["NameConflict"],
    ),
    "foreign deployment and service: terminated deletes nothing": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1, owner=None), service=child("Service", owner=None)),
        "Failed",
        events=["NameConflict"],
    ),
    "foreign ingress: terminated deletes nothing": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, ingress=child("Ingress", owner="x")),
        "Failed",
        events=["NameConflict"],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    plan = decide(case.session, case.template, case.observed, NOW, OPTS)
    assert plan.status["phase"] == case.phase
    assert [m["kind"] for m in plan.apply] == case.applies
    assert plan.scale_to == case.scale_to
    assert [kind for kind, *_ in plan.delete] == case.deletes
    assert [e.reason for e in plan.events] == case.events
    assert (plan.ensure_home is not None) == case.home
    assert plan.spec_patch == case.spec_patch
    conditions = {c["type"]: c for c in plan.status["conditions"]}
    assert set(conditions) == {"Ready", "TemplateResolved", "WorkloadAvailable"}
    assert conditions["Ready"]["status"] == ("True" if case.phase == "Running" else "False")
    assert all(c["observedGeneration"] == 2 for c in conditions.values())
    assert plan.status["observedGeneration"] == 2


def test_running_status_carries_url_pod_and_start() -> None:
    plan = decide(
        session(phase="Pending"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        NOW,
        OPTS,
    )
    assert plan.status["url"] == "http://s1.ns.svc.cluster.local:3000/"
    assert plan.status["podName"] == POD.name
    assert plan.status["startedAt"] == timestamp(NOW)


def test_ingress_domain_adds_an_ingress_and_its_url() -> None:
    opts = WorkloadOptions(default_resources={}, ingress_domain="streams.example.com")
    plan = decide(session(), TEMPLATE, seen(), NOW, opts)
    assert [m["kind"] for m in plan.apply] == ["NetworkPolicy", "Deployment", "Service", "Ingress"]
    running = decide(
        session(phase="Pending"),
        TEMPLATE,
        seen(deployment(1, 1), service=True, network_policy=True, ingress=True, pods=(POD,)),
        NOW,
        opts,
    )
    assert running.status["url"] == "https://s1.streams.example.com/"


def test_hibernation_records_when_and_clears_url() -> None:
    deadline = timestamp(NOW - timedelta(seconds=1))
    plan = decide(
        session("hibernated", phase="Running", url="http://x", podName="p", idleDeadline=deadline),
        TEMPLATE,
        seen(deployment(0)),
        NOW,
        OPTS,
    )
    assert plan.status["hibernatedAt"] == timestamp(NOW)
    assert plan.status["url"] is None and plan.status["podName"] is None
    assert plan.status["idleDeadline"] is None, "a hibernated session has no idle deadline"


def test_a_running_session_leaves_its_idle_deadline_to_the_idle_timer() -> None:
    deadline = timestamp(NOW + timedelta(minutes=5))
    observed = seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
    plan = decide(session(phase="Running", idleDeadline=deadline), TEMPLATE, observed, NOW, OPTS)
    assert "idleDeadline" not in plan.status


def test_a_settled_session_plans_nothing_twice() -> None:
    """Feeding the decided status back in is a fixed point: no writes, no events."""
    observed = seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
    first = decide(session(phase="Pending"), TEMPLATE, observed, NOW, OPTS)
    settled = SessionInput(
        "s1", "ns", "uid-1", 2, session().spec, {k: v for k, v in first.status.items() if v}
    )
    again = decide(settled, TEMPLATE, observed, NOW + timedelta(minutes=5), OPTS)
    assert not status_changed(settled.status, again.status)
    assert again.events == [] and again.apply == [] and again.scale_to is None


def test_template_edits_do_not_restart_a_running_session() -> None:
    edited = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "baseImage": "new:image"}}
    plan = decide(
        session(phase="Running", startedAt=timestamp(NOW)),
        edited,
        seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        NOW,
        OPTS,
    )
    assert plan.apply == []
    woken = decide(
        session(phase="Hibernated"), edited, seen(deployment(0), network_policy=True), NOW, OPTS
    )
    container = woken.apply[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "new:image"


def test_condition_transition_time_moves_only_on_change() -> None:
    observed = seen(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
    first = decide(session(phase="Pending"), TEMPLATE, observed, NOW, OPTS)
    later = NOW + timedelta(minutes=10)
    second = decide(
        session(phase="Running", conditions=first.status["conditions"]),
        TEMPLATE,
        observed,
        later,
        OPTS,
    )
    times = {c["type"]: c["lastTransitionTime"] for c in second.status["conditions"]}
    assert times == {c["type"]: timestamp(NOW) for c in first.status["conditions"]}
    hibernating = decide(
        session("hibernated", phase="Running", conditions=first.status["conditions"]),
        TEMPLATE,
        seen(deployment(0)),
        later,
        OPTS,
    )
    ready = next(c for c in hibernating.status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == timestamp(later)


def test_a_name_conflict_is_a_ready_condition_reported_once() -> None:
    observed = seen(deployment(1, 1, owner=None), service=child("Service", owner=None))
    first = decide(session("terminated", phase="Running"), TEMPLATE, observed, NOW, OPTS)
    ready = next(c for c in first.status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "NameConflict")
    assert "Deployment/s1, Service/s1" in ready["message"]
    assert first.events[0].type == "Warning"
    assert first.delete == [] and first.apply == [] and first.scale_to is None
    assert first.ensure_home is None and first.spec_patch is None
    settled = SessionInput(
        "s1", "ns", SESSION_UID, 2, session("terminated").spec, dict(first.status)
    )
    again = decide(settled, TEMPLATE, observed, NOW + timedelta(minutes=1), OPTS)
    assert again.events == [], "an unchanged conflict is not reported again"
    assert not status_changed(settled.status, again.status)


def test_a_resolved_conflict_proceeds() -> None:
    conflicted = decide(session(), TEMPLATE, seen(deployment(0, owner=None)), NOW, OPTS)
    resumed = SessionInput("s1", "ns", SESSION_UID, 2, session().spec, dict(conflicted.status))
    plan = decide(resumed, TEMPLATE, seen(), NOW, OPTS)
    assert [m["kind"] for m in plan.apply] == ["NetworkPolicy", "Deployment", "Service"]
    ready = next(c for c in plan.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Pending"


def test_writes_to_existing_children_carry_their_uid() -> None:
    """Deletes, scales and re-applies are conditional on the object still being the child."""
    terminate = decide(
        session("terminated", phase="Running"),
        TEMPLATE,
        seen(deployment(1, 1), service=True),
        NOW,
        OPTS,
    )
    assert terminate.delete == [
        ("Deployment", "s1", "deployment-uid"),
        ("Service", "s1", "service-uid"),
    ]
    hibernate = decide(
        session("hibernated", phase="Running"), TEMPLATE, seen(deployment(1, 1)), NOW, OPTS
    )
    assert (hibernate.scale_to, hibernate.scale_uid) == (0, "deployment-uid")
    wake = decide(
        session(phase="Hibernated"), TEMPLATE, seen(deployment(0), service=True), NOW, OPTS
    )
    applied = {m["kind"]: m["metadata"] for m in wake.apply}
    assert applied["Deployment"]["uid"] == "deployment-uid"
    assert "uid" not in applied["NetworkPolicy"]  # not there yet: created
    create = decide(session(), TEMPLATE, seen(), NOW, OPTS)
    assert all("uid" not in m["metadata"] for m in create.apply), "new objects have no uid yet"


def test_only_a_controller_reference_makes_a_child() -> None:
    not_controller = child("Deployment")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    observed = Observed.of(SESSION_UID, {"Deployment": not_controller, "Service": None})
    assert observed.deployment is None and observed.conflicts == ("Deployment/s1",)


@pytest.mark.parametrize(
    ("current", "change", "revival"),
    [
        ("terminated", {"state": "running"}, True),
        ("terminated", {"state": "hibernated"}, True),
        ("terminated", {"state": "terminated"}, False),
        ("terminated", {"tags": ["x"]}, False),
        ("hibernated", {"state": "running"}, False),
        ("running", {"state": "terminated"}, False),
    ],
)
def test_revival_is_leaving_terminated(current: str, change: dict[str, Any], revival: bool) -> None:
    assert revives({"state": current}, change) is revival


def test_a_running_session_reports_the_resources_its_workload_was_started_with() -> None:
    sized = deployment(1, 1)
    requests = {"cpu": "750m", "memory": "3Gi"}
    sized["spec"]["template"] = {"spec": {"containers": [{"resources": {"requests": requests}}]}}
    observed = seen(sized, service=True, network_policy=True, pods=(POD,))
    plan = decide(session(phase="Pending"), TEMPLATE, observed, NOW, OPTS)
    assert plan.status["phase"] == "Running"
    assert plan.status["resources"] == {"requests": requests}
