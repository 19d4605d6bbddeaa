"""The Session state machine as one pure decision: observed world in, plan out.

``decide`` takes the Session, its Template (or None), what exists of its children and the clock,
and returns a ``Plan``: objects to apply or delete, the home volume to ensure, a spec change (only
``terminated`` when maxSessionDuration is exceeded), the complete status, and the Events of any
transition. The operator gathers the inputs and applies the plan; nothing here does I/O. A plan
for a session whose children are as wanted holds no write but a changed status: the operator
runs it on every event of the session and its children, so that is what keeps it cheap.

Children are the session's only when their controller owner reference carries its uid
(``Observed.of``); an object of another owner under a child's name is a ``NameConflict``: the plan
then touches nothing, and every write to an existing child carries its uid as a precondition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streamspace import manifests
from streamspace.conditions import Condition, merge_conditions, parse_timestamp, timestamp
from streamspace.durations import parse_duration
from streamspace.manifests import SessionRef, WorkloadOptions
from streamspace.naming import workload_name
from streamspace.ownership import NAME_CONFLICT, controlled_by, object_uid
from streamspace.quotas import QUOTA_EXCEEDED, Excess
from streamspace.templates import template_problems, view_template

# Set by the operator together with a state change it makes itself ("hibernated:Idle",
# "running:Connect"), read once by the transition's Event, then removed.
CAUSE_ANNOTATION = "stream.space/state-cause"

READY = "Ready"
TEMPLATE_RESOLVED = "TemplateResolved"
WORKLOAD_AVAILABLE = "WorkloadAvailable"


@dataclass(frozen=True)
class PodView:
    name: str
    ready: bool
    terminating: bool


@dataclass(frozen=True)
class Observed:
    """What exists of a session's children right now: only objects the session controls count
    as children; same-named objects of anyone else are listed in ``conflicts``."""

    deployment: Mapping[str, Any] | None = None
    service: bool = False
    ingress: bool = False
    network_policy: bool = False
    pods: tuple[PodView, ...] = ()
    uids: Mapping[str, str] = field(default_factory=dict)  # kind → uid of each child
    conflicts: tuple[str, ...] = ()  # "Kind/name" of same-named objects it does not control

    @classmethod
    def of(
        cls,
        session_uid: str,
        children: Mapping[str, Mapping[str, Any] | None],
        pods: tuple[PodView, ...] = (),
    ) -> Observed:
        """Sort the objects found under the children's names (kind → object or None)."""
        ours = {
            kind: obj
            for kind, obj in children.items()
            if obj is not None and controlled_by(obj, session_uid)
        }
        conflicts = tuple(
            f"{kind}/{(obj.get('metadata') or {}).get('name')}"
            for kind, obj in sorted(children.items())
            if obj is not None and kind not in ours
        )
        return cls(
            deployment=ours.get("Deployment"),
            service="Service" in ours,
            ingress="Ingress" in ours,
            network_policy="NetworkPolicy" in ours,
            pods=pods,
            uids={kind: object_uid(obj) for kind, obj in ours.items()},
            conflicts=conflicts,
        )


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    scale_to: int | None = None  # patch only the replica count of the existing Deployment
    scale_uid: str = ""  # ... whose uid is this (a precondition of the patch)
    delete: list[tuple[str, str, str]] = field(default_factory=list)  # (kind, name, uid)
    ensure_home: dict[str, Any] | None = None
    spec_patch: dict[str, Any] | None = None
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    clear_cause: bool = False  # the cause annotation was used (or is stale) and goes


@dataclass(frozen=True)
class SessionInput:
    """A Session object, reduced to what the decision reads."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    cause: str | None = None  # the CAUSE_ANNOTATION value

    def cause_for(self, state: str) -> str | None:
        """Why the operator moved the session to ``state`` ("Idle", "Connect"), if it did."""
        if self.cause and self.cause.startswith(f"{state}:"):
            return self.cause.split(":", 1)[1]
        return None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> SessionInput:
        meta = body["metadata"]
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=body.get("spec") or {},
            status=body.get("status") or {},
            cause=(meta.get("annotations") or {}).get(CAUSE_ANNOTATION),
        )

    @property
    def ref(self) -> SessionRef:
        return SessionRef(
            name=self.name,
            namespace=self.namespace,
            uid=self.uid,
            user=str(self.spec.get("user", "")),
            template=str(self.spec.get("template", "")),
            spec=self.spec,
        )


def _available(deployment: Mapping[str, Any] | None) -> bool:
    if deployment is None:
        return False
    status = deployment.get("status") or {}
    return int(status.get("availableReplicas") or 0) >= 1


def _replicas(deployment: Mapping[str, Any] | None) -> int:
    if deployment is None:
        return 0
    return int((deployment.get("spec") or {}).get("replicas") or 0)


def _template_condition(
    template_name: str, template: Mapping[str, Any] | None
) -> tuple[Condition, list[str]]:
    if template is None:
        return Condition(
            TEMPLATE_RESOLVED, False, "TemplateNotFound", f"Template {template_name!r} not found"
        ), ["missing"]
    problems = template_problems(template_name, template.get("spec") or {})
    if problems:
        return Condition(TEMPLATE_RESOLVED, False, "TemplateInvalid", "; ".join(problems)), problems
    return Condition(TEMPLATE_RESOLVED, True, "Resolved", f"Template {template_name!r}"), []


def decide(
    session: SessionInput,
    template: Mapping[str, Any] | None,
    observed: Observed,
    now: datetime,
    opts: WorkloadOptions,
    *,
    hold: Excess | None = None,
) -> Plan:
    """The next step for ``session``; idempotent: the same inputs give the same plan.

    ``hold``: the limit of the session's SessionQuota that a start would break (``quotas``);
    a session wanted running that is held gets no workload and waits, ``Pending``."""
    state = session.spec.get("state", "running")
    plan = Plan()
    held: Excess | None = None
    tpl_cond, tpl_problems = _template_condition(session.ref.template, template)
    status: dict[str, Any] = {
        "observedGeneration": session.generation,
        "url": None,
        "podName": None,
        "startedAt": session.status.get("startedAt"),
        "hibernatedAt": session.status.get("hibernatedAt"),
    }
    if state != "running":
        # only a running session has an idle deadline (the idle timer keeps it while running)
        status["idleDeadline"] = None
    if observed.conflicts:
        # Someone else's objects hold the children's names: act on nothing, say so.
        phase, workload = "Failed", _conflict(session, observed, plan)
    elif state == "terminated":
        phase, workload = _terminate(session, observed, plan)
    elif state == "hibernated":
        phase, workload = _hibernate(session, observed, plan, status, now)
    elif template is None or tpl_problems:
        # Running is wanted, but nothing can run without a valid template: touch no children.
        phase = "Pending" if template is None else "Failed"
        workload = Condition(WORKLOAD_AVAILABLE, False, tpl_cond.reason, tpl_cond.message)
        if session.status.get("phase") != phase or not session.status.get("conditions"):
            plan.events.append(Event("Warning", tpl_cond.reason, tpl_cond.message))
    elif hold is not None:
        phase, held = "Pending", hold
        workload = Condition(WORKLOAD_AVAILABLE, False, QUOTA_EXCEEDED, hold.message)
    else:
        phase, workload = _run(
            session, template, observed=observed, plan=plan, status=status, now=now, opts=opts
        )
    quota = _quota_condition(session, plan, held)

    ready = Condition(READY, phase == "Running", phase, _phase_message(phase, state))
    if observed.conflicts:
        ready = Condition(READY, False, NAME_CONFLICT, workload.message)
    status["phase"] = phase
    status["conditions"] = merge_conditions(
        session.status.get("conditions"),
        [tpl_cond, workload, ready, *quota],
        session.generation,
        now,
    )
    plan.status = status
    return plan


def _quota_condition(session: SessionInput, plan: Plan, hold: Excess | None) -> list[Condition]:
    """``QuotaExceeded`` True while held (one Event when it becomes so),
    False once a held session is let go; absent on sessions never held."""
    conditions: list[Mapping[str, Any]] = session.status.get("conditions") or []
    before = next((c for c in conditions if c.get("type") == QUOTA_EXCEEDED), None)
    if hold is None:
        if before is None:
            return []
        return [Condition(QUOTA_EXCEEDED, False, "WithinQuota", "no quota holds the session back")]
    if before is None or before.get("status") != "True":
        plan.events.append(Event("Warning", QUOTA_EXCEEDED, hold.message))
    return [Condition(QUOTA_EXCEEDED, True, QUOTA_EXCEEDED, hold.message)]


def _conflict(session: SessionInput, observed: Observed, plan: Plan) -> Condition:
    objects = ", ".join(observed.conflicts)
    message = (
        f"name taken by {objects}, not controlled by this session: "
        "remove or rename it, or use another session name"
    )
    conditions: list[Mapping[str, Any]] = session.status.get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == READY), {})
    if ready.get("reason") != NAME_CONFLICT or ready.get("message") != message:
        plan.events.append(Event("Warning", NAME_CONFLICT, message))
    return Condition(WORKLOAD_AVAILABLE, False, NAME_CONFLICT, message)


def _terminate(session: SessionInput, observed: Observed, plan: Plan) -> tuple[str, Condition]:
    name = workload_name(session.name)
    for kind in ("Deployment", "Service", "Ingress", "NetworkPolicy"):
        if kind in observed.uids:
            plan.delete.append((kind, name, observed.uids[kind]))
    previous = session.status.get("phase")
    if plan.delete:
        return previous or "Pending", Condition(
            WORKLOAD_AVAILABLE, False, "Terminating", "deleting the workload"
        )
    if previous != "Terminated":
        plan.events.append(Event("Normal", "Terminated", "session terminated; workload deleted"))
    return "Terminated", Condition(WORKLOAD_AVAILABLE, False, "Terminated", "workload deleted")


def _hibernate(
    session: SessionInput, observed: Observed, plan: Plan, status: dict[str, Any], now: datetime
) -> tuple[str, Condition]:
    if observed.deployment is not None and _replicas(observed.deployment) != 0:
        plan.scale_to, plan.scale_uid = 0, observed.uids["Deployment"]
    previous = session.status.get("phase")
    if observed.pods:
        return previous or "Pending", Condition(
            WORKLOAD_AVAILABLE,
            False,
            "ScalingDown",
            f"waiting for {len(observed.pods)} pod(s) to stop",
        )
    if previous != "Hibernated":
        status["hibernatedAt"] = timestamp(now)
        cause = session.cause_for("hibernated") or "requested"
        plan.events.append(Event("Normal", "Hibernated", f"session hibernated ({cause})"))
        plan.clear_cause = session.cause is not None
    return "Hibernated", Condition(WORKLOAD_AVAILABLE, False, "Hibernated", "scaled to zero")


def _run(
    session: SessionInput,
    template: Mapping[str, Any],
    *,
    observed: Observed,
    plan: Plan,
    status: dict[str, Any],
    now: datetime,
    opts: WorkloadOptions,
) -> tuple[str, Condition]:
    ref = session.ref
    previous = session.status.get("phase")
    view = view_template(template.get("spec") or {})
    limit = str(session.spec.get("maxSessionDuration", "8h"))
    started = parse_timestamp(session.status.get("startedAt"))
    if previous == "Running" and started and now - started >= parse_duration(limit):
        plan.spec_patch = {"state": "terminated"}
        plan.events.append(
            Event(
                "Normal", "MaxDurationExceeded", f"running longer than maxSessionDuration {limit}"
            )
        )
    if not observed.network_policy:
        # first: the pod never runs unprotected
        plan.apply.append(manifests.network_policy(ref, view, opts))
    if observed.deployment is None or _replicas(observed.deployment) == 0:
        # (Re)started from the current template: template edits reach a session on its next
        # start, never by restarting a running one.
        plan.apply.append(
            _existing(manifests.deployment(ref, view, opts, replicas=1), observed, "Deployment")
        )
        if bool(session.spec.get("persistentHome", True)):
            # made sure of as the pod is about to start, not on every reconcile (the volume
            # is never watched: a create refused with 409 would cost a request each time)
            plan.ensure_home = manifests.home_pvc(ref, opts)
    elif _replicas(observed.deployment) != 1:
        plan.scale_to, plan.scale_uid = 1, observed.uids["Deployment"]
    if previous == "Hibernated":
        # Reported with the status leaving Hibernated, as every transition is (decision 161):
        # a decision made again after its status write was refused still reports the wake
        # its first try started.
        cause = session.cause_for("running") or "requested"
        plan.events.append(Event("Normal", "Woken", f"session woken ({cause})"))
        plan.clear_cause = session.cause is not None
    if not observed.service:
        plan.apply.append(manifests.service(ref, view))
    if opts.ingress_domain and not observed.ingress:
        plan.apply.append(manifests.ingress(ref, view, opts))
    ready_pod = next((p for p in observed.pods if p.ready and not p.terminating), None)
    if not _available(observed.deployment) or ready_pod is None:
        return "Pending", Condition(
            WORKLOAD_AVAILABLE, False, "Progressing", "waiting for the pod to become ready"
        )
    status["url"] = manifests.session_url(ref, view, opts)
    status["podName"] = ready_pod.name
    resources = _workload_resources(observed.deployment)
    if resources:
        status["resources"] = resources
    if previous != "Running":
        status["startedAt"] = timestamp(now)
        plan.events.append(Event("Normal", "Started", f"session running in pod {ready_pod.name}"))
    return "Running", Condition(WORKLOAD_AVAILABLE, True, "Available", f"pod {ready_pod.name}")


def _workload_resources(deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The requests and limits the running workload was made with (a Template edited since
    reaches it only at its next start): what usage reports and quotas count."""
    pod = ((deployment or {}).get("spec") or {}).get("template") or {}
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    resources = containers[0].get("resources") or {}
    return {k: dict(resources[k]) for k in ("requests", "limits") if resources.get(k)}


def _existing(manifest: dict[str, Any], observed: Observed, kind: str) -> dict[str, Any]:
    """``manifest`` applied to the child that exists: its uid makes the apply conditional on
    still being that object (the API server answers 409 for any other)."""
    uid = observed.uids.get(kind)
    if uid:
        manifest["metadata"]["uid"] = uid
    return manifest


def _phase_message(phase: str, state: str) -> str:
    if phase == "Running":
        return "the session is reachable"
    if phase in ("Hibernated", "Terminated"):
        return f"the session is {phase.lower()}"
    return f"state {state}: not reachable yet"


def revives(current: Mapping[str, Any], change: Mapping[str, Any]) -> bool:
    """Whether applying spec ``change`` moves a terminated session (spec ``current``) out of
    ``terminated``: revival, which would restart its maxSessionDuration; for admins only."""
    wanted = change.get("state")
    return current.get("state") == "terminated" and wanted is not None and wanted != "terminated"


def status_changed(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether writing ``wanted`` would change ``current`` (None means absent)."""
    return any(current.get(k) != v for k, v in wanted.items())


def pods_from(items: Sequence[Mapping[str, Any]]) -> tuple[PodView, ...]:
    """Reduce Pod objects to what the decision needs."""
    views = []
    for pod in items:
        meta = pod.get("metadata") or {}
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
        views.append(PodView(str(meta.get("name")), ready, bool(meta.get("deletionTimestamp"))))
    return tuple(sorted(views, key=lambda p: p.name))
