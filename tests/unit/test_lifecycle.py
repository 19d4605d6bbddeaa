"""The Session state machine: table-driven cases of ``decide`` (inputs → plan), no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streamspace.conditions import timestamp
from streamspace.lifecycle import Observed, PodView, SessionInput, decide, status_changed
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


def deployment(replicas: int, available: int = 0) -> dict[str, Any]:
    return {"spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


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
    "missing template waits": Case(
        session(), None, Observed(), "Pending", events=["TemplateNotFound"]
    ),
    "missing template, already reported": Case(
        session(phase="Pending", conditions=[{"type": "Ready"}]), None, Observed(), "Pending"
    ),
    "invalid template fails": Case(
        session(), NO_PORT_TEMPLATE, Observed(), "Failed", events=["TemplateInvalid"]
    ),
    "new session creates children": Case(
        session(),
        TEMPLATE,
        Observed(),
        "Pending",
        applies=["NetworkPolicy", "Deployment", "Service"],
        home=True,
    ),
    "pod ready: running": Case(
        session(phase="Pending"),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        home=True,
        events=["Started"],
    ),
    "still running: nothing to do": Case(
        session(phase="Running", startedAt=timestamp(NOW - timedelta(hours=1))),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        home=True,
    ),
    "available but pod terminating: pending": Case(
        session(phase="Running", startedAt=timestamp(NOW)),
        TEMPLATE,
        Observed(
            deployment(1, 1), service=True, network_policy=True, pods=(PodView("p", True, True),)
        ),
        "Pending",
        home=True,
    ),
    "max duration exceeded": Case(
        session(phase="Running", startedAt=timestamp(NOW - timedelta(hours=8))),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        home=True,
        events=["MaxDurationExceeded"],
        spec_patch={"state": "terminated"},
    ),
    "hibernate: scale down, wait for pods": Case(
        session("hibernated", phase="Running"),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        scale_to=0,
    ),
    "hibernate: pods gone": Case(
        session("hibernated", phase="Running"),
        TEMPLATE,
        Observed(deployment(0), service=True, network_policy=True),
        "Hibernated",
        events=["Hibernated"],
    ),
    "hibernated, missing template: still fine": Case(
        session("hibernated", phase="Hibernated"), None, Observed(deployment(0)), "Hibernated"
    ),
    "wake from hibernation": Case(
        session(phase="Hibernated"),
        TEMPLATE,
        Observed(deployment(0), service=True, network_policy=True),
        "Pending",
        applies=["Deployment"],
        home=True,
        events=["Woken"],
    ),
    "stray replica count is corrected": Case(
        session(phase="Running"),
        TEMPLATE,
        Observed(deployment(3, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        scale_to=1,
        home=True,
    ),
    "terminate: delete children": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        "Running",
        deletes=["Deployment", "Service", "NetworkPolicy"],
    ),
    "terminated: nothing left": Case(
        session("terminated", phase="Running"),
        TEMPLATE,
        Observed(),
        "Terminated",
        events=["Terminated"],
    ),
    "terminated stays quiet": Case(
        session("terminated", phase="Terminated"), None, Observed(), "Terminated"
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_decide(case: Case) -> None:
    plan = decide(case.session, case.template, case.observed, NOW, OPTS)
    assert plan.status["phase"] == case.phase
    assert [m["kind"] for m in plan.apply] == case.applies
    assert plan.scale_to == case.scale_to
    assert [kind for kind, _ in plan.delete] == case.deletes
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
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        NOW,
        OPTS,
    )
    assert plan.status["url"] == "http://s1.ns.svc.cluster.local:3000/"
    assert plan.status["podName"] == POD.name
    assert plan.status["startedAt"] == timestamp(NOW)


def test_ingress_domain_adds_an_ingress_and_its_url() -> None:
    opts = WorkloadOptions(default_resources={}, ingress_domain="streams.example.com")
    plan = decide(session(), TEMPLATE, Observed(), NOW, opts)
    assert [m["kind"] for m in plan.apply] == ["NetworkPolicy", "Deployment", "Service", "Ingress"]
    running = decide(
        session(phase="Pending"),
        TEMPLATE,
        Observed(deployment(1, 1), service=True, network_policy=True, ingress=True, pods=(POD,)),
        NOW,
        opts,
    )
    assert running.status["url"] == "https://s1.streams.example.com/"


def test_hibernation_records_when_and_clears_url() -> None:
    deadline = timestamp(NOW - timedelta(seconds=1))
    plan = decide(
        session("hibernated", phase="Running", url="http://x", podName="p", idleDeadline=deadline),
        TEMPLATE,
        Observed(deployment(0)),
        NOW,
        OPTS,
    )
    assert plan.status["hibernatedAt"] == timestamp(NOW)
    assert plan.status["url"] is None and plan.status["podName"] is None
    assert plan.status["idleDeadline"] is None, "a hibernated session has no idle deadline"


def test_a_running_session_leaves_its_idle_deadline_to_the_idle_timer() -> None:
    deadline = timestamp(NOW + timedelta(minutes=5))
    observed = Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
    plan = decide(session(phase="Running", idleDeadline=deadline), TEMPLATE, observed, NOW, OPTS)
    assert "idleDeadline" not in plan.status


def test_a_settled_session_plans_nothing_twice() -> None:
    """Feeding the decided status back in is a fixed point: no writes, no events."""
    observed = Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
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
        Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,)),
        NOW,
        OPTS,
    )
    assert plan.apply == []
    woken = decide(
        session(phase="Hibernated"), edited, Observed(deployment(0), network_policy=True), NOW, OPTS
    )
    container = woken.apply[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "new:image"


def test_condition_transition_time_moves_only_on_change() -> None:
    observed = Observed(deployment(1, 1), service=True, network_policy=True, pods=(POD,))
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
        Observed(deployment(0)),
        later,
        OPTS,
    )
    ready = next(c for c in hibernating.status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == timestamp(later)
