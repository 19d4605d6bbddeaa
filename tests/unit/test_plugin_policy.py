"""The Plugin decision: phases, conditions, children and status from gathered inputs (pure)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from pluginfixtures import RECORDER, WEBHOOK
from streamspace.plugins import fields
from streamspace.plugins.manifest import RISKS
from streamspace.plugins.policy import (
    CatalogEntry,
    Gathered,
    PluginInput,
    decide,
    webhook_url_problem,
)
from streamspace.plugins.secret import new_signing_secret, plugin_secret, secret_config
from streamspace.plugins.workload import PluginRef, child_name

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
UID = "0c8e3d2a-1111-4222-8333-444455556666"


def plugin(
    catalog: dict[str, Any] | None = None,
    spec: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
) -> PluginInput:
    manifest = catalog or WEBHOOK
    return PluginInput.from_body(
        {
            "metadata": {
                "name": "p1",
                "namespace": "ns",
                "uid": UID,
                "generation": 3,
                "annotations": annotations or {},
            },
            "spec": {
                "catalogPlugin": {"repository": "official", "name": manifest["name"]},
                **(spec or {}),
            },
        }
    )


def owned(kind: str, uid: str = UID, **extra: Any) -> dict[str, Any]:
    return {
        "kind": kind,
        "metadata": {"name": "plugin-p1", "ownerReferences": [{"controller": True, "uid": uid}]},
        **extra,
    }


def secret_with(config: dict[str, Any], uid: str = UID) -> dict[str, Any]:
    data = {"config.json": base64.b64encode(json.dumps(config).encode()).decode()}
    return owned("Secret", uid, data=data)


def gathered(manifest: dict[str, Any], **kw: Any) -> Gathered:
    kw.setdefault("secret", secret_with({}))
    return Gathered(catalog=CatalogEntry(7, manifest["version"], manifest), **kw)


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


URL = {"url": "https://hooks.example.com/streamspace"}

CASES = [
    pytest.param(
        plugin(spec={"config": URL}),
        gathered(WEBHOOK),
        "Ready",
        {"Approved": ("True", "Approved"), "ConfigValid": ("True", "Valid")},
        id="webhook-ready",
    ),
    pytest.param(
        plugin(spec={"config": {"url": "https://x.example.com", "retries": 99}}),
        gathered(WEBHOOK),
        "Failed",
        {"ConfigValid": ("False", "ConfigInvalid"), "Ready": ("False", "ConfigInvalid")},
        id="invalid-config",
    ),
    pytest.param(
        plugin(spec={"config": URL, "enabled": False}),
        gathered(WEBHOOK),
        "Disabled",
        {"Ready": ("False", "Disabled")},
        id="disabled",
    ),
    pytest.param(
        plugin(
            spec={
                "config": URL,
                "catalogPlugin": {"repository": "o", "name": "audit-hook", "version": "9"},
            }
        ),
        gathered(WEBHOOK),
        "Failed",
        {"Ready": ("False", "VersionUnavailable")},
        id="version-unavailable",
    ),
    pytest.param(
        plugin(spec={"config": URL}),
        Gathered(catalog=None, catalog_problem="no plugin repository official"),
        "Pending",
        {
            "Ready": ("False", "CatalogEntryNotFound"),
            "Approved": ("Unknown", "CatalogEntryNotFound"),
        },
        id="no-catalog-entry",
    ),
    pytest.param(
        plugin(RECORDER, spec={"config": {"bucket": "b"}}),
        gathered(RECORDER),
        "PendingApproval",
        {"Approved": ("False", "ApprovalRequired"), "Ready": ("False", "ApprovalRequired")},
        id="high-risk-needs-approval",
    ),
    pytest.param(
        plugin(
            RECORDER, spec={"config": {"bucket": "b"}, "approvedPermissions": ["sessions.record"]}
        ),
        gathered(RECORDER),
        "Pending",
        {"Approved": ("True", "Approved"), "Ready": ("False", "DeploymentUnavailable")},
        id="approved-runtime-starting",
    ),
    pytest.param(
        plugin(
            RECORDER, spec={"config": {"bucket": "b"}, "approvedPermissions": ["sessions.record"]}
        ),
        gathered(
            RECORDER,
            runtime={"Deployment": owned("Deployment", status={"availableReplicas": 1})},
        ),
        "Ready",
        {"Ready": ("True", "Ready")},
        id="approved-runtime-available",
    ),
    pytest.param(
        plugin(spec={"config": URL}),
        gathered(WEBHOOK, secret=secret_with({}, uid="someone-else")),
        "Failed",
        {"Ready": ("False", "NameConflict")},
        id="foreign-secret",
    ),
    pytest.param(
        plugin(
            RECORDER, spec={"config": {"bucket": "b"}, "approvedPermissions": ["sessions.record"]}
        ),
        gathered(RECORDER, runtime={"Service": {"metadata": {"name": "plugin-p1"}}}),
        "Failed",
        {"Ready": ("False", "NameConflict")},
        id="foreign-service",
    ),
    pytest.param(
        plugin(spec={"config": URL}, annotations={"stream.space/plugin-secret": "provided"}),
        gathered(WEBHOOK, secret=None),
        "Pending",
        {"Ready": ("False", "SecretMissing")},
        id="secret-awaited-from-installer",
    ),
]


@pytest.mark.parametrize(("given", "found", "phase", "expected"), CASES)
def test_phase_and_conditions(
    given: PluginInput, found: Gathered, phase: str, expected: dict[str, tuple[str, str]]
) -> None:
    plan = decide(given, found, NOW)
    assert plan.status["phase"] == phase, plan.status
    got = conditions(plan.status)
    assert {k: got[k] for k in expected} == expected
    assert plan.status["observedGeneration"] == 3
    assert plan.status["secretName"] == "plugin-p1"


def test_webhook_status_facts_and_url() -> None:
    plan = decide(plugin(spec={"config": URL}), gathered(WEBHOOK), NOW)
    assert plan.status["url"] == URL["url"]
    assert plan.status["version"] == "1.2.0"
    assert plan.status["pluginType"] == "webhook"
    assert plan.status["permissions"] == [{"name": "sessions.read", "risk": "low"}]
    assert plan.status["events"] == ["session.*", "repository.synced"]
    assert plan.apply == [] and not plan.create_secret


def test_invalid_config_names_every_field_path() -> None:
    config = {"url": "http://x.example.com", "retries": 99, "colour": "red"}
    plan = decide(plugin(spec={"config": config}), gathered(WEBHOOK), NOW)
    message = next(c for c in plan.status["conditions"] if c["type"] == "ConfigValid")["message"]
    assert "retries: 99 is greater than the maximum of 10" in message
    assert "url: 'http://x.example.com' does not match" in message
    assert "colour: unknown property" in message
    assert "url" not in plan.status or plan.status["url"] is None


def test_secret_config_is_merged_and_secret_properties_stay_out_of_the_spec() -> None:
    merged = decide(
        plugin(spec={"config": URL}), gathered(WEBHOOK, secret=secret_with({"token": "t0k"})), NOW
    )
    assert merged.status["phase"] == "Ready"
    misplaced = decide(plugin(spec={"config": {**URL, "token": "t0k"}}), gathered(WEBHOOK), NOW)
    message = misplaced.status["message"]
    assert "token: is secret" in message
    assert "t0k" not in json.dumps(misplaced.status)
    broken = decide(
        plugin(spec={"config": URL}),
        gathered(WEBHOOK, secret=owned("Secret", data={"config.json": "bm90IGpzb24="})),
        NOW,
    )
    assert "config.json of the Secret is not JSON" in broken.status["message"]


def test_a_missing_secret_is_created_unless_the_installer_provides_it() -> None:
    assert decide(plugin(spec={"config": URL}), gathered(WEBHOOK, secret=None), NOW).create_secret
    provided = plugin(spec={"config": URL}, annotations={"stream.space/plugin-secret": "provided"})
    assert not decide(provided, gathered(WEBHOOK, secret=None), NOW).create_secret
    foreign = gathered(WEBHOOK, secret=secret_with({}, uid="other"))
    assert not decide(plugin(spec={"config": URL}), foreign, NOW).create_secret


def by_kind(plan_apply: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {m["kind"]: m for m in plan_apply}


def test_runnable_children_replicas_security_and_egress() -> None:
    pending = decide(plugin(RECORDER, spec={"config": {"bucket": "b"}}), gathered(RECORDER), NOW)
    children = by_kind(pending.apply)
    assert set(children) == {"Deployment", "Service", "NetworkPolicy"}
    assert children["Deployment"]["spec"]["replicas"] == 0  # pending approval
    assert children["NetworkPolicy"]["spec"]["egress"][0]["ports"][0]["port"] == 53
    pod = children["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
    }
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == RECORDER["resources"]
    assert container["image"] == RECORDER["image"]
    for child in children.values():
        assert child["metadata"]["ownerReferences"][0]["uid"] == UID
        assert child["metadata"]["name"] == "plugin-p1"
    assert pending.status["url"] == "http://plugin-p1.ns.svc:8080/events"

    approved = {"config": {"bucket": "b"}, "approvedPermissions": ["sessions.record"]}
    running = by_kind(decide(plugin(RECORDER, spec=approved), gathered(RECORDER), NOW).apply)
    assert running["Deployment"]["spec"]["replicas"] == 1
    assert running["NetworkPolicy"]["spec"]["egress"] == [{}]  # network.egress granted
    disabled = by_kind(
        decide(plugin(RECORDER, spec={**approved, "enabled": False}), gathered(RECORDER), NOW).apply
    )
    assert disabled["Deployment"]["spec"]["replicas"] == 0
    invalid = by_kind(
        decide(plugin(RECORDER, spec={**approved, "config": {}}), gathered(RECORDER), NOW).apply
    )
    assert invalid["Deployment"]["spec"]["replicas"] == 0


def test_an_upgrade_adding_a_high_risk_permission_asks_again() -> None:
    upgraded = {
        **WEBHOOK,
        "version": "2.0.0",
        "permissions": [*WEBHOOK["permissions"], {"name": "users.admin", "risk": "high"}],
    }
    plan = decide(plugin(spec={"config": URL}), gathered(upgraded), NOW)
    assert plan.status["phase"] == "PendingApproval"
    assert "users.admin" in plan.status["message"]


def test_conditions_keep_their_transition_time_when_nothing_changes() -> None:
    first = decide(plugin(spec={"config": URL}), gathered(WEBHOOK), NOW)
    body_status = first.status
    again = PluginInput.from_body(
        {
            "metadata": {"name": "p1", "namespace": "ns", "uid": UID, "generation": 3},
            "spec": {
                "catalogPlugin": {"repository": "official", "name": "audit-hook"},
                "config": URL,
            },
            "status": body_status,
        }
    )
    later = decide(again, gathered(WEBHOOK), NOW.replace(hour=10))
    assert later.status == body_status


URLS = [
    ("https://hooks.example.com/x", False, None),
    ("http://hooks.example.com/x", False, "must be an https"),
    ("https://127.0.0.1:8443/x", False, "loopback, private or link-local"),
    ("https://127.0.0.1:8443/x", True, None),
    ("https://10.1.2.3/x", False, "loopback, private or link-local"),
    ("https://169.254.169.254/latest", True, "metadata"),
    ("https://localhost/x", False, "loopback hosts"),
    ("https://[::ffff:10.0.0.1]/x", False, "loopback, private or link-local"),
    (None, False, "is required"),
]


@pytest.mark.parametrize(("url", "allow_private", "problem"), URLS)
def test_webhook_url_rules(url: str | None, allow_private: bool, problem: str | None) -> None:
    found = webhook_url_problem(url, allow_private)
    assert (found is None) if problem is None else (problem in (found or "")), found


def test_config_helpers() -> None:
    assert fields.secret_properties(
        {"properties": {"a": {"writeOnly": True}, "b": {"format": "password"}, "c": {}}}
    ) == {"a", "b"}
    schema = {"type": "object", "properties": {"n": {"type": "object", "required": ["x"]}}}
    assert fields.problems(schema, {"n": {}}, where="") == {"n.x": "required"}
    assert fields.problems(schema, {"n": {"x": 1}}, where="") == {}
    assert fields.problems({"required": ["url"]}, {}, where="") == {"url": "required"}
    assert fields.problems({"minProperties": 1}, {}, where="") == {
        "(root)": "{} should be non-empty"
    }


def test_a_runtime_stops_when_its_catalog_entry_goes_and_goes_when_the_image_does() -> None:
    approved = {"config": {"bucket": "b"}, "approvedPermissions": ["sessions.record"]}
    running = owned("Deployment", spec={"replicas": 1})
    running["metadata"]["uid"] = "deploy-uid"
    gone = decide(
        plugin(RECORDER, spec=approved),
        Gathered(catalog=None, secret=secret_with({}), runtime={"Deployment": running}),
        NOW,
    )
    assert gone.scale_to_zero == "deploy-uid" and gone.apply == []
    foreign = {"metadata": {"name": "plugin-p1", "uid": "x"}, "spec": {"replicas": 1}}
    untouched = decide(
        plugin(RECORDER, spec=approved),
        Gathered(catalog=None, secret=secret_with({}), runtime={"Deployment": foreign}),
        NOW,
    )
    assert untouched.scale_to_zero is None

    service = owned("Service")
    service["metadata"]["uid"] = "svc-uid"
    no_image = {k: v for k, v in RECORDER.items() if k not in ("image", "port")}
    plan = decide(
        plugin(RECORDER, spec=approved),
        gathered(
            no_image, runtime={"Deployment": running, "Service": service, "NetworkPolicy": None}
        ),
        NOW,
    )
    assert plan.delete == [("Deployment", "deploy-uid"), ("Service", "svc-uid")]
    assert plan.apply == []


# -- the status written is the status the CRD declares (crds/ is the source of truth) ---------

CRD = Path(__file__).resolve().parents[2] / "crds" / "plugin.yaml"


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD.read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def every_plan() -> list[dict[str, Any]]:
    plans = [decide(case.values[0], case.values[1], NOW).status for case in CASES]
    return plans


def test_every_status_field_written_is_declared_so_none_is_pruned() -> None:
    status = crd_schema()["properties"]["status"]["properties"]
    condition = status["conditions"]["items"]["properties"]
    reason = re.compile(status["conditions"]["items"]["properties"]["reason"]["pattern"])
    for written in every_plan():
        assert set(written) <= set(status), set(written) - set(status)
        assert written["phase"] in status["phase"]["enum"]
        for cond in written["conditions"]:
            assert set(cond) <= set(condition)
            assert reason.fullmatch(cond["reason"])
        for permission in written.get("permissions", []):
            assert (
                permission["risk"] in status["permissions"]["items"]["properties"]["risk"]["enum"]
            )


def test_the_crd_and_the_manifest_rules_agree() -> None:
    status = crd_schema()["properties"]["status"]["properties"]
    assert tuple(status["permissions"]["items"]["properties"]["risk"]["enum"]) == RISKS
    assert child_name("p" * 56) == "plugin-" + "p" * 56 and len(child_name("p" * 56)) == 63


def test_a_secret_value_never_reaches_an_error_message() -> None:
    schema = {
        "type": "object",
        "properties": {
            "token": {"type": "string", "writeOnly": True, "minLength": 40},
            "password": {"type": "string", "format": "password", "pattern": "^[0-9]+$"},
            "name": {"type": "string", "minLength": 10},
        },
        "not": {"required": ["name", "token"], "properties": {"name": {"const": "x"}}},
    }
    config = {"token": "hunter2-token", "password": "pa55-word", "name": "x"}
    errors = fields.problems(schema, config, where="")
    text = json.dumps(errors)
    assert "hunter2-token" not in text and "pa55-word" not in text
    assert errors["token"] == "invalid value (fails 'minLength')"
    assert errors["password"] == "invalid value (fails 'pattern')"
    assert errors["name"] == "'x' is too short"  # plain values are quoted as usual
    # the root's "not" quotes the whole configuration: named by its rule only
    assert errors["(root)"] == "invalid value (fails 'not')"


def test_a_foreign_secret_is_never_read_for_config() -> None:
    foreign = secret_with({"token": "stolen"}, uid="someone-else")
    plan = decide(plugin(spec={"config": URL}), gathered(WEBHOOK, secret=foreign), NOW)
    assert plan.status["phase"] == "Failed"
    assert "stolen" not in json.dumps(plan.status)
    assert plan.status.get("url") == URL["url"]


def test_signing_secrets_are_standard_webhooks_secrets_and_the_secret_is_owned() -> None:
    first, second = new_signing_secret(), new_signing_secret()
    assert first != second
    assert first.startswith("whsec_") and len(base64.b64decode(first[6:])) == 24
    ref = PluginRef("p1", "ns", UID)
    built = plugin_secret(ref, first, {"token": "t"})
    assert built["metadata"]["ownerReferences"][0]["uid"] == UID
    assert built["metadata"]["labels"]["stream.space/plugin"] == "p1"
    assert base64.b64decode(built["data"]["signing-secret"]).decode() == first
    assert secret_config(built) == {"token": "t"}


def test_a_phase_change_is_an_event_and_a_steady_phase_is_not() -> None:
    first = decide(plugin(spec={"config": {"url": "http://x"}}), gathered(WEBHOOK), NOW)
    [event] = first.events
    assert (event.type, event.reason) == ("Warning", "ConfigInvalid")
    assert event.message.startswith("Failed: ")
    again = PluginInput.from_body(
        {
            "metadata": {"name": "p1", "namespace": "ns", "uid": UID, "generation": 3},
            "spec": {
                "catalogPlugin": {"repository": "official", "name": "audit-hook"},
                "config": {"url": "http://x"},
            },
            "status": first.status,
        }
    )
    assert decide(again, gathered(WEBHOOK), NOW).events == []
