"""SessionQuota as pure decisions: which quota governs a user, what the user holds, who fits.

A quota governs the Sessions of its own namespace. ``select`` picks the most specific quota for
(user, groups): one naming the user, else one naming a group of the user, else a default one;
among equals the alphabetically first name wins (decision 168).

Usage is computed from Session objects as a watch holds them, never kept as a counter
(decision 169). A Session that is not terminated counts for ``sessions`` and, with
``persistentHome``, holds the user's home volume (``storage``: the home size, once per user);
one that is *consuming* (wanted running and started: not held by its quota, and past its first
status or its hibernation) counts for ``runningSessions`` and its resource requests for ``cpu``,
``memory`` and ``gpus`` (requests resolved as the operator does: session, Template
``defaultResources``, operator defaults).

``admitted`` is the one admission order both processes use (decision 170): every consuming or
hibernated session is in first (a lowered quota never stops what runs), then the sessions that
want to run and are not running yet, oldest first (creationTimestamp, then name), each as long
as it fits. The operator starts a session only when it is admitted; the facade refuses a create
or wake whose session would not be.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streamspace.manifests import DEFAULT_RESOURCES
from streamspace.quantities import Quantity, parse_quantity
from streamspace.templates import Resources, merge_resources, normalize_resources

QUOTA_EXCEEDED = "QuotaExceeded"
"""The Session condition type (and Event reason) of a session its quota holds back."""
ERROR_CODE = "QUOTA_EXCEEDED"
"""The REST error code of a request its quota refuses."""

LIMITS = ("sessions", "runningSessions", "cpu", "memory", "gpus", "storage")
COUNTS = ("sessions", "runningSessions", "gpus")


@dataclass(frozen=True)
class Quota:
    name: str
    namespace: str
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    default: bool = False
    limits: Mapping[str, Quantity] = field(default_factory=dict)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Quota:
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        raw = spec.get("limits") or {}
        limits = {k: parse_quantity(raw[k]) for k in LIMITS if raw.get(k) is not None}
        return cls(
            name=str(meta.get("name", "")),
            namespace=str(meta.get("namespace", "")),
            users=frozenset(spec.get("users") or ()),
            groups=frozenset(spec.get("groups") or ()),
            default=bool(spec.get("default", False)),
            limits=limits,
        )

    def rank(self, user: str, groups: Iterable[str]) -> int | None:
        """0 names the user, 1 one of the groups, 2 default; None: does not select the user."""
        if user in self.users:
            return 0
        if self.groups.intersection(groups):
            return 1
        return 2 if self.default else None

    def view(self) -> dict[str, Any]:
        """The limits as the API shows them (counts as numbers, quantities as written)."""
        return {k: int(v.value) if k in COUNTS else v.text for k, v in self.limits.items()}


def select(
    quotas: Iterable[Mapping[str, Any]], user: str, groups: Iterable[str] = ()
) -> Quota | None:
    """The quota that governs ``user`` among ``quotas`` (SessionQuota objects of one namespace)."""
    groups = tuple(groups)
    ranked = []
    for body in quotas:
        quota = Quota.from_body(body)
        rank = quota.rank(user, groups)
        if rank is not None:
            ranked.append((rank, quota.name, quota))
    return min(ranked, key=lambda r: (r[0], r[1]))[2] if ranked else None


@dataclass(frozen=True)
class Usage:
    """What a user holds (or a session needs) of each limited resource."""

    sessions: int = 0
    runningSessions: int = 0
    cpu: Decimal = Decimal(0)
    memory: Decimal = Decimal(0)
    gpus: Decimal = Decimal(0)
    storage: Decimal = Decimal(0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            sessions=self.sessions + other.sessions,
            runningSessions=self.runningSessions + other.runningSessions,
            cpu=self.cpu + other.cpu,
            memory=self.memory + other.memory,
            gpus=self.gpus + other.gpus,
            storage=max(self.storage, other.storage),  # one home volume per user
        )

    def get(self, resource: str) -> Decimal:
        return Decimal(getattr(self, resource))

    def view(self) -> dict[str, Any]:
        return {k: _show(k, self.get(k)) for k in LIMITS}


def _show(resource: str, value: Decimal) -> str | int:
    if resource in COUNTS:
        return int(value)
    if resource == "cpu" and value != value.to_integral_value():
        return f"{int(value * 1000)}m"
    if resource in ("memory", "storage") and value and value % (1024**3) == 0:
        return f"{int(value / 1024**3)}Gi"
    if resource in ("memory", "storage") and value and value % (1024**2) == 0:
        return f"{int(value / 1024**2)}Mi"
    return str(value.normalize()) if value else "0"


@dataclass(frozen=True)
class Excess:
    """A limit that a session would break: what the user would hold, and what is allowed."""

    quota: str
    resource: str
    used: str | int
    allowed: str | int

    @property
    def message(self) -> str:
        return (
            f"SessionQuota {self.quota}: {self.resource} would be {self.used}, "
            f"allowed {self.allowed}"
        )

    def details(self) -> dict[str, Any]:
        return {
            "quota": self.quota,
            "resource": self.resource,
            "used": self.used,
            "allowed": self.allowed,
        }


def excess(quota: Quota, used: Usage, adding: Usage) -> Excess | None:
    """The first limit (in ``LIMITS`` order) that ``used + adding`` breaks, for the resources
    ``adding`` takes more of; None when it fits."""
    total = used + adding
    for resource in LIMITS:
        allowed = quota.limits.get(resource)
        if allowed is None or total.get(resource) <= used.get(resource):
            continue
        if total.get(resource) > allowed.value:
            return Excess(
                quota.name,
                resource,
                _show(resource, total.get(resource)),
                int(allowed.value) if resource in COUNTS else allowed.text,
            )
    return None


# -- sessions ---------------------------------------------------------------------------------


def wants_running(body: Mapping[str, Any]) -> bool:
    return str((body.get("spec") or {}).get("state", "running")) == "running"


def terminated(body: Mapping[str, Any]) -> bool:
    return str((body.get("spec") or {}).get("state", "running")) == "terminated"


def held(body: Mapping[str, Any]) -> bool:
    """Whether the session's status says its quota holds it back."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == QUOTA_EXCEEDED and c.get("status") == "True" for c in conditions)


def consuming(body: Mapping[str, Any]) -> bool:
    """Wanted running and started: it has had a status (the operator took it on) and is neither
    hibernated, terminated nor held. Such a session is never stopped by its quota."""
    phase = (body.get("status") or {}).get("phase")
    return (
        wants_running(body) and phase not in (None, "Hibernated", "Terminated") and not held(body)
    )


def order(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return (str(meta.get("creationTimestamp") or "~"), str(meta.get("name", "")))


TemplateResources = Callable[[str], Resources]
"""Template name → its ``defaultResources`` as ``{requests, limits}`` (empty when unknown)."""


@dataclass(frozen=True)
class Sizing:
    """What turns a Session into the resources it takes."""

    template_resources: TemplateResources
    home_size: str
    defaults: Resources = field(default_factory=lambda: DEFAULT_RESOURCES)


def _requests(body: Mapping[str, Any], sizing: Sizing) -> Mapping[str, Any]:
    """The requests a session takes: what its workload was started with (``status.resources``)
    while it runs, else what it would start with: session, Template, operator defaults."""
    started = ((body.get("status") or {}).get("resources") or {}).get("requests")
    if started and consuming(body):
        return dict(started)
    spec = body.get("spec") or {}
    own = normalize_resources(spec.get("resources"))
    template = sizing.template_resources(str(spec.get("template", "")))
    return merge_resources(own, template, sizing.defaults).get("requests") or {}


def need(body: Mapping[str, Any], sizing: Sizing, *, running: bool) -> Usage:
    """What one session takes: nothing when terminated; ``running``: as a running one."""
    if terminated(body):
        return Usage()
    spec = body.get("spec") or {}
    storage = Decimal(0)
    if bool(spec.get("persistentHome", True)):
        storage = parse_quantity(sizing.home_size).value
    if not running:
        return Usage(sessions=1, storage=storage)
    requests = _requests(body, sizing)

    def amount(name: str) -> Decimal:
        return parse_quantity(requests[name]).value if name in requests else Decimal(0)

    gpus = sum((amount(k) for k in requests if k.endswith("/gpu")), Decimal(0))
    return Usage(1, 1, amount("cpu"), amount("memory"), gpus, storage)


@dataclass(frozen=True)
class Admission:
    """The outcome of the admission order for one user's sessions."""

    admitted: frozenset[str]
    held: Mapping[str, Excess]
    used: Usage  # consuming and admitted sessions, hibernated ones for sessions and storage


def admit(quota: Quota | None, sessions: Sequence[Mapping[str, Any]], sizing: Sizing) -> Admission:
    """Run the admission order over one user's Sessions of the quota's namespace."""
    live = sorted((s for s in sessions if not terminated(s)), key=order)
    used = Usage()
    waiting = []
    for body in live:
        if consuming(body) or not wants_running(body):
            used = used + need(body, sizing, running=wants_running(body))
        else:
            waiting.append(body)
    admitted: set[str] = set()
    refused: dict[str, Excess] = {}
    for body in waiting:
        name = str(body["metadata"]["name"])
        wanted = need(body, sizing, running=True)
        over = excess(quota, used, wanted) if quota is not None else None
        if over is None:
            admitted.add(name)
            used = used + wanted
        else:
            # held, it still exists: it counts for sessions (and its home), not for running
            refused[name] = over
            used = used + need(body, sizing, running=False)
    return Admission(frozenset(admitted), refused, used)


def held_back(
    quota: Quota, sessions: Sequence[Mapping[str, Any]], body: Mapping[str, Any], sizing: Sizing
) -> Excess | None:
    """The limit that keeps Session ``body`` from starting among the user's ``sessions`` (its
    own older copy among them is replaced); None when the admission order admits it."""
    name = str(body["metadata"]["name"])
    rest = [s for s in sessions if s["metadata"]["name"] != name]
    return admit(quota, [*rest, body], sizing).held.get(name)


def refusal(
    quota: Quota, sessions: Sequence[Mapping[str, Any]], wanted: Mapping[str, Any], sizing: Sizing
) -> Excess | None:
    """Why a request that leaves the user's ``sessions`` with ``wanted`` (a session created, or
    changed by the request) must be refused; None when it may go ahead. It may only if
    ``wanted`` is admitted and takes the place of no session admitted before it (a wake of an
    older session never pushes back one that a request was already told may run)."""
    name = str(wanted["metadata"]["name"])
    rest = [s for s in sessions if s["metadata"]["name"] != name]
    before = admit(quota, rest, sizing)
    if not wants_running(wanted):
        return excess(quota, before.used, need(wanted, sizing, running=False))
    after = admit(quota, [*rest, wanted], sizing)
    if name in after.held:
        return after.held[name]
    return next((after.held[s] for s in sorted(before.admitted) if s in after.held), None)


def as_wanted(body: Mapping[str, Any], state: str) -> dict[str, Any]:
    """``body`` after a request sets ``spec.state`` to ``state``: a session that did not want
    to run and now does has not started yet, so it waits in the admission order."""
    if state != "running" or wants_running(body):
        return {**body, "spec": {**(body.get("spec") or {}), "state": state}}
    status = {**(body.get("status") or {}), "phase": "Hibernated"}
    return {**body, "spec": {**(body.get("spec") or {}), "state": state}, "status": status}
