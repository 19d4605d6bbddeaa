"""What a Plugin should be: a pure decision from the Plugin, its catalog entry and its children.

``decide`` takes what the operator gathered (the catalog entry or why there is none, the Secret
``plugin-<name>``, the runtime objects of that name) and returns the plan: whether to create the
Secret, which objects to apply, and the status (phase, conditions and the plugin's facts). It
does no I/O and reads no clock (``now`` comes in).

Phase, by precedence (the first that holds): ``Pending`` (no catalog entry yet), ``Failed``
(NameConflict: an object of a child's name not owned by this Plugin; VersionUnavailable),
``Pending`` (the Secret is awaited from whoever installed the Plugin), ``Disabled``,
``PendingApproval`` (a high-risk permission not in ``spec.approvedPermissions``), ``Failed``
(ConfigInvalid), ``Pending`` (the runtime's Deployment not available yet), ``Ready``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from streamspace.catalog.netguard import refusal
from streamspace.conditions import Condition, merge_conditions
from streamspace.lifecycle import Event
from streamspace.ownership import NAME_CONFLICT, controlled_by
from streamspace.plugins import fields
from streamspace.plugins.manifest import Manifest, read_manifest
from streamspace.plugins.secret import secret_config
from streamspace.plugins.workload import (
    EGRESS_PERMISSION,
    PluginRef,
    child_name,
    deployment,
    network_policy,
    service,
    service_url,
)

SECRET_ANNOTATION = "stream.space/plugin-secret"  # noqa: S105 - a key, not a secret
"""``provided`` on a Plugin: its installer creates the Secret (the facade does, to hand out the
signing secret once); the operator waits for it instead of creating one."""

RUNTIME_KINDS = ("Deployment", "Service", "NetworkPolicy")


@dataclass(frozen=True)
class PluginInput:
    """A Plugin object, reduced to what the decision reads."""

    ref: PluginRef
    generation: int
    repository: str
    catalog_name: str
    version: str | None
    enabled: bool
    config: Mapping[str, Any]
    approved: frozenset[str]
    status: Mapping[str, Any]
    secret_provided: bool = False

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PluginInput:
        meta, spec = body["metadata"], body.get("spec") or {}
        catalog = spec.get("catalogPlugin") or {}
        return cls(
            ref=PluginRef(meta["name"], meta["namespace"], meta["uid"]),
            generation=int(meta.get("generation") or 0),
            repository=str(catalog.get("repository") or ""),
            catalog_name=str(catalog.get("name") or ""),
            version=catalog.get("version") or None,
            enabled=bool(spec.get("enabled", True)),
            config=spec.get("config") or {},
            approved=frozenset(spec.get("approvedPermissions") or ()),
            status=body.get("status") or {},
            secret_provided=(meta.get("annotations") or {}).get(SECRET_ANNOTATION) == "provided",
        )


@dataclass(frozen=True)
class CatalogEntry:
    id: int
    version: str
    manifest: Mapping[str, Any]


@dataclass(frozen=True)
class Gathered:
    """What the operator found: the catalog entry (or why none) and the objects named
    ``plugin-<name>`` (None when absent; anyone's, ownership is judged here)."""

    catalog: CatalogEntry | None
    catalog_problem: str = ""
    secret: Mapping[str, Any] | None = None
    runtime: Mapping[str, Mapping[str, Any] | None] = field(default_factory=dict)


@dataclass
class PluginPlan:
    create_secret: bool = False
    apply: list[dict[str, Any]] = field(default_factory=list)
    scale_to_zero: str | None = None  # uid of our Deployment, when it must stop
    delete: list[tuple[str, str]] = field(default_factory=list)  # (kind, uid) of ours
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)  # on a phase change, for kubectl describe
    # the installer said it provides the Secret and it is not there yet (no watch of ours shows
    # Secrets: the operator looks again soon, decision 160)
    waiting_secret: bool = False


def _owned_runtime(plugin: PluginInput, gathered: Gathered) -> dict[str, str]:
    """Kind → uid of the runtime objects this Plugin controls."""
    return {
        kind: str(obj["metadata"]["uid"])
        for kind, obj in gathered.runtime.items()
        if obj is not None and controlled_by(obj, plugin.ref.uid)
    }


def webhook_url_problem(url: Any, allow_private: bool) -> str | None:
    """The outbound-URL rules a webhook's target must meet, judged without a lookup (delivery
    pins the resolved address): https, a host, no refused address literal or loopback name."""
    if not isinstance(url, str) or not url:
        return "url: is required (a webhook plugin delivers to it)"
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        return "url: must be an https:// URL with a host"
    host = parts.hostname.rstrip(".").lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        return "url: loopback hosts are refused (ALLOW_PRIVATE_NETWORKS)"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    why = refusal(address, allow_private)
    return f"url: {why} is refused (ALLOW_PRIVATE_NETWORKS)" if why else None


def _approval(manifest: Manifest, approved: frozenset[str]) -> Condition:
    missing = [p.name for p in manifest.permissions if p.risk == "high" and p.name not in approved]
    if missing:
        return Condition(
            "Approved", False, "ApprovalRequired", "an admin must approve: " + ", ".join(missing)
        )
    return Condition("Approved", True, "Approved", "no high-risk permission awaits approval")


def _config(
    plugin: PluginInput, manifest: Manifest, secret: Mapping[str, Any] | None, allow_private: bool
) -> tuple[Condition, dict[str, Any]]:
    secrets = secret_config(secret) if secret is not None else {}
    if isinstance(secrets, str):
        return Condition("ConfigValid", False, "ConfigInvalid", secrets), dict(plugin.config)
    merged = {**plugin.config, **secrets}
    problems = [
        f"{name}: is secret; it belongs in the plugin's Secret, not in spec.config"
        for name in fields.misplaced(manifest.config_schema, plugin.config)
    ]
    found = fields.problems(manifest.config_schema, merged, where="")
    problems += [f"{path}: {message}" for path, message in sorted(found.items())]
    if manifest.plugin_type == "webhook":
        url_problem = webhook_url_problem(merged.get("url"), allow_private)
        problems += [url_problem] if url_problem and url_problem not in problems else []
    if problems:
        return Condition("ConfigValid", False, "ConfigInvalid", "; ".join(problems)), merged
    return Condition("ConfigValid", True, "Valid", "the configuration matches the schema"), merged


def _conflicts(plugin: PluginInput, gathered: Gathered, runnable: bool) -> list[str]:
    found = [("Secret", gathered.secret)]
    if runnable:
        found += [(kind, gathered.runtime.get(kind)) for kind in RUNTIME_KINDS]
    return [
        f"{kind} {child_name(plugin.ref.name)} exists and is not owned by this Plugin"
        for kind, obj in found
        if obj is not None and not controlled_by(obj, plugin.ref.uid)
    ]


def _controlled(obj: Mapping[str, Any] | None, plugin: PluginInput) -> bool:
    return obj is not None and controlled_by(obj, plugin.ref.uid)


def _available(obj: Mapping[str, Any] | None) -> bool:
    return int(((obj or {}).get("status") or {}).get("availableReplicas") or 0) > 0


def decide(
    plugin: PluginInput, gathered: Gathered, now: datetime, allow_private: bool = False
) -> PluginPlan:
    plan = PluginPlan()
    status: dict[str, Any] = {
        "secretName": child_name(plugin.ref.name),
        "observedGeneration": plugin.generation,
    }
    if gathered.catalog is None:
        unknown = gathered.catalog_problem or "the catalog entry was not found"
        wanted = [
            Condition(kind, None, "CatalogEntryNotFound", unknown)
            for kind in ("Approved", "ConfigValid")
        ] + [Condition("Ready", False, "CatalogEntryNotFound", unknown)]
        plan.create_secret = gathered.secret is None and not plugin.secret_provided
        # The entry went (or never came): a runtime of ours stops until it is back.
        ours = gathered.runtime.get("Deployment") or {}
        if (
            ours
            and controlled_by(ours, plugin.ref.uid)
            and (ours.get("spec") or {}).get("replicas")
        ):
            plan.scale_to_zero = str(ours["metadata"]["uid"])
        return _finish(plan, plugin, status, wanted, phase="Pending", now=now)

    entry = gathered.catalog
    manifest = read_manifest(entry.manifest)
    status.update(
        version=entry.version,
        pluginType=manifest.plugin_type,
        permissions=[{"name": p.name, "risk": p.risk} for p in manifest.permissions],
        events=list(manifest.events),
    )
    approval = _approval(manifest, plugin.approved)
    # A Secret of the name that is not ours is never read (a NameConflict below).
    own_secret = gathered.secret if _controlled(gathered.secret, plugin) else None
    config, merged = _config(plugin, manifest, own_secret, allow_private)
    conflicts = _conflicts(plugin, gathered, manifest.runnable)
    version_ok = plugin.version is None or plugin.version == entry.version
    waiting_secret = gathered.secret is None and plugin.secret_provided
    plan.waiting_secret = waiting_secret
    plan.create_secret = gathered.secret is None and not plugin.secret_provided and not conflicts
    runs = (
        plugin.enabled
        and bool(approval.status)
        and bool(config.status)
        and version_ok
        and not waiting_secret
    )

    if manifest.runnable and not conflicts and manifest.image and manifest.port:
        replicas = 1 if runs else 0
        granted = any(p.name == EGRESS_PERMISSION for p in manifest.permissions) and bool(
            approval.status
        )
        plan.apply = [
            deployment(
                plugin.ref,
                manifest.image,
                manifest.port,
                {k: dict(v) for k, v in manifest.resources.items()},
                replicas,
            ),
            service(plugin.ref, manifest.port),
            network_policy(plugin.ref, manifest.port, egress=granted),
        ]
        status["url"] = service_url(plugin.ref, manifest.port)
    elif manifest.plugin_type == "webhook" and config.status:
        status["url"] = merged.get("url")
    else:
        status["url"] = None
    if not manifest.runnable:  # an upgrade dropped the image: its runtime goes
        plan.delete = sorted(_owned_runtime(plugin, gathered).items())

    phase, ready = _readiness(
        plugin,
        catalog_version=entry.version,
        runnable=manifest.runnable,
        conflicts=conflicts,
        waiting_secret=waiting_secret,
        approval=approval,
        config=config,
        gathered=gathered,
    )
    return _finish(plan, plugin, status, [approval, config, ready], phase=phase, now=now)


def _readiness(
    plugin: PluginInput,
    *,
    catalog_version: str,
    runnable: bool,
    conflicts: list[str],
    waiting_secret: bool,
    approval: Condition,
    config: Condition,
    gathered: Gathered,
) -> tuple[str, Condition]:
    """The phase and the Ready condition: the first rule that holds, in the precedence of the
    module's docstring."""
    name = child_name(plugin.ref.name)
    rules = [
        (bool(conflicts), "Failed", NAME_CONFLICT, "; ".join(conflicts)),
        (
            plugin.version not in (None, catalog_version),
            "Failed",
            "VersionUnavailable",
            f"version {plugin.version} was asked for; the catalog has {catalog_version}",
        ),
        (
            waiting_secret,
            "Pending",
            "SecretMissing",
            f"waiting for the Secret {name} from the installer",
        ),
        (not plugin.enabled, "Disabled", "Disabled", "spec.enabled is false"),
        (not approval.status, "PendingApproval", approval.reason, approval.message),
        (not config.status, "Failed", config.reason, config.message),
        (
            runnable and not _available(gathered.runtime.get("Deployment")),
            "Pending",
            "DeploymentUnavailable",
            f"waiting for the Deployment {name} to be available",
        ),
    ]
    for holds, phase, reason, message in rules:
        if holds:
            return phase, Condition("Ready", False, reason, message)
    return "Ready", Condition("Ready", True, "Ready", "the plugin receives its events")


def _finish(
    plan: PluginPlan,
    plugin: PluginInput,
    status: dict[str, Any],
    wanted: list[Condition],
    *,
    phase: str,
    now: datetime,
) -> PluginPlan:
    ready = next(c for c in wanted if c.type == "Ready")
    if plugin.status.get("phase") != phase:
        kind = "Warning" if phase == "Failed" else "Normal"
        plan.events.append(Event(kind, ready.reason, f"{phase}: {ready.message}"))
    status.update(
        phase=phase,
        message=ready.message,
        conditions=merge_conditions(
            plugin.status.get("conditions"), wanted, plugin.generation, now
        ),
    )
    plan.status = status
    return plan
