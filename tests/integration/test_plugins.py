"""The Plugin resource reconciled by the real operator against the real API server and
PostgreSQL: catalog lookup through a synced plugin repository, approval, configuration,
the Secret, and the isolated runtime of a runnable plugin."""

from __future__ import annotations

import base64
import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from gitfixtures import GitRepo, make_repo
from pluginfixtures import RECORDER, WEBHOOK, plugin_repository
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

TIMEOUT = 60
REPOSITORY = "official-plugins"


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


def start(
    objects: Objects, start_operator: Callable[..., Any], database: str, tmp_path: Path, **env: str
) -> GitRepo:
    """The operator running, and a plugin repository with WEBHOOK and RECORDER synced."""
    migrate(database)
    git = make_repo(tmp_path / "plugins", plugin_repository(WEBHOOK, RECORDER))
    start_operator(
        DATABASE_URL=database,
        ALLOW_LOCAL_REPOS="true",
        SYNC_WORK_DIR=str(tmp_path / "work"),
        **env,
    )
    objects.create("templaterepositories", REPOSITORY, {"url": git.url, "type": "plugin"})
    assert wait_until(
        lambda: status(objects, "templaterepositories", REPOSITORY).get("pluginCount") == 2,
        TIMEOUT,
    ), status(objects, "templaterepositories", REPOSITORY)
    return git


@pytest.fixture
def synced(
    objects: Objects, start_operator: Callable[..., Any], database: str, tmp_path: Path
) -> Objects:
    start(objects, start_operator, database, tmp_path, RECONCILE_INTERVAL="1s")
    return objects


def status(objects: Objects, plural: str, name: str) -> dict[str, Any]:
    return dict((objects.get(plural, name) or {}).get("status") or {})


def install(objects: Objects, name: str, catalog_name: str, **spec: Any) -> None:
    objects.create(
        "plugins",
        name,
        {"catalogPlugin": {"repository": REPOSITORY, "name": catalog_name}, **spec},
    )


def patch_spec(objects: Objects, name: str, spec: dict[str, Any]) -> None:
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "plugins", name, {"spec": spec}
    )


def wait_phase(
    objects: Objects, name: str, phase: str | tuple[str, ...], generation: int | None = None
) -> dict[str, Any]:
    phases = (phase,) if isinstance(phase, str) else phase

    def done() -> bool:
        current = status(objects, "plugins", name)
        return current.get("phase") in phases and (
            generation is None or current.get("observedGeneration") == generation
        )

    assert wait_until(done, TIMEOUT), status(objects, "plugins", name)
    return status(objects, "plugins", name)


def condition(current: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in current["conditions"] if c["type"] == kind)


def replicas(objects: Objects, name: str) -> int | None:
    try:
        return int(objects.apps.read_namespaced_deployment(name, objects.ns).spec.replicas)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def test_a_high_risk_runnable_plugin_waits_for_approval_and_runs_isolated(synced: Objects) -> None:
    objects = synced
    install(objects, "recorder", "session-recorder", config={"bucket": "recordings"})
    current = wait_phase(objects, "recorder", "PendingApproval")
    approved = condition(current, "Approved")
    assert (approved["status"], approved["reason"]) == ("False", "ApprovalRequired")
    assert "sessions.record" in approved["message"]
    assert current["version"] == "0.3.1" and current["pluginType"] == "extension"
    assert {"name": "sessions.record", "risk": "high"} in current["permissions"]
    assert current["events"] == ["session.created", "session.deleted"]
    assert current["url"] == f"http://plugin-recorder.{objects.ns}.svc:8080/events"
    uid = objects.get("plugins", "recorder")["metadata"]["uid"]  # type: ignore[index]

    # The runtime exists while pending, scaled to zero.
    assert wait_until(lambda: replicas(objects, "plugin-recorder") == 0, TIMEOUT)
    deployment = objects.apps.read_namespaced_deployment("plugin-recorder", objects.ns)
    api = objects.apps.api_client
    body = api.sanitize_for_serialization(deployment)
    pod = body["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"] == RECORDER["resources"]
    assert container["image"] == RECORDER["image"]
    assert {"name": "streamspace", "mountPath": "/var/run/streamspace", "readOnly": True} in (
        container["volumeMounts"]
    )
    service = objects.core.read_namespaced_service("plugin-recorder", objects.ns)
    assert service.spec.ports[0].port == 8080
    policy = client.NetworkingV1Api(api).read_namespaced_network_policy(
        "plugin-recorder", objects.ns
    )
    assert policy.spec.ingress[0].ports[0].port == 8080
    assert policy.spec.ingress[0]._from[0].pod_selector.match_labels == {
        "app.kubernetes.io/part-of": "streamspace",
        "app.kubernetes.io/component": "facade",
    }
    assert [p.port for p in policy.spec.egress[0].ports] == [53, 53]  # DNS only: not approved
    for child in (deployment, service, policy):
        refs = child.metadata.owner_references
        assert [(r.kind, r.uid, r.controller) for r in refs] == [("Plugin", uid, True)]

    # The API server itself judges the pod against the restricted standard (a dry run: no
    # controller manager here makes pods of Deployments, nor the default ServiceAccount).
    try:  # a full control plane (started by an earlier test) has made it already
        objects.core.create_namespaced_service_account(
            objects.ns, {"metadata": {"name": "default"}}
        )
    except client.ApiException as exc:
        if exc.status != 409:
            raise
    objects.core.patch_namespace(
        objects.ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    objects.core.create_namespaced_pod(
        objects.ns, {"metadata": {"name": "restricted-check"}, "spec": pod}, dry_run="All"
    )
    lax = copy.deepcopy(pod)
    del lax["securityContext"]["runAsNonRoot"]
    del lax["containers"][0]["securityContext"]["runAsNonRoot"]
    with pytest.raises(client.ApiException) as caught:  # the check is really enforced
        objects.core.create_namespaced_pod(
            objects.ns, {"metadata": {"name": "lax-check"}, "spec": lax}, dry_run="All"
        )
    assert caught.value.status == 403 and "runAsNonRoot" in caught.value.body

    # The Secret was made for the kubectl-installed Plugin, owned by it.
    secret = objects.core.read_namespaced_secret("plugin-recorder", objects.ns)
    assert [r.uid for r in secret.metadata.owner_references] == [uid]
    assert base64.b64decode(secret.data["signing-secret"]).startswith(b"whsec_")
    assert secret.metadata.labels["stream.space/plugin"] == "recorder"
    assert current["secretName"] == "plugin-recorder"

    # Approval: the runtime scales up, egress opens (network.egress is requested).
    patch_spec(objects, "recorder", {"approvedPermissions": ["sessions.record"]})
    # Pending while no pod is available (the minimal control plane runs none); Ready when an
    # earlier test has started the full one, whose kwok nodes run the pod at once
    current = wait_phase(objects, "recorder", ("Pending", "Ready"), generation=2)
    assert condition(current, "Approved")["status"] == "True"
    if current["phase"] == "Pending":
        assert condition(current, "Ready")["reason"] == "DeploymentUnavailable"
    assert wait_until(lambda: replicas(objects, "plugin-recorder") == 1, TIMEOUT)
    policy = client.NetworkingV1Api(api).read_namespaced_network_policy(
        "plugin-recorder", objects.ns
    )
    assert policy.spec.egress[0].ports is None and policy.spec.egress[0].to is None

    # Disabling scales it to zero.
    patch_spec(objects, "recorder", {"enabled": False})
    wait_phase(objects, "recorder", "Disabled")
    assert wait_until(lambda: replicas(objects, "plugin-recorder") == 0, TIMEOUT)


def test_a_webhook_plugin_validates_its_config_and_delivers_to_its_url(synced: Objects) -> None:
    objects = synced
    install(
        objects, "hook", "audit-hook", config={"url": "http://hooks.example.com", "retries": 42}
    )
    current = wait_phase(objects, "hook", "Failed")
    valid = condition(current, "ConfigValid")
    assert (valid["status"], valid["reason"]) == ("False", "ConfigInvalid")
    assert "retries: 42 is greater than the maximum of 10" in valid["message"]
    assert "url: 'http://hooks.example.com' does not match '^https://'" in valid["message"]
    assert current.get("url") is None

    good = {"url": "https://hooks.example.com/streamspace", "channel": "#ops"}
    # A merge patch: null removes retries.
    patch_spec(objects, "hook", {"config": {"retries": None, **good}})
    current = wait_phase(objects, "hook", "Ready")
    assert condition(current, "ConfigValid")["status"] == "True"
    assert current["url"] == good["url"]
    assert current["pluginType"] == "webhook"
    # No runtime for a webhook plugin.
    assert replicas(objects, "plugin-hook") is None


def test_a_foreign_secret_of_the_plugins_name_is_never_adopted(synced: Objects) -> None:
    objects = synced
    foreign = {
        "metadata": {"name": "plugin-squatter", "labels": {"owner": "someone"}},
        "stringData": {"signing-secret": "whsec_theirs"},
    }
    objects.core.create_namespaced_secret(objects.ns, foreign)
    install(objects, "squatter", "audit-hook", config={"url": "https://hooks.example.com/x"})
    current = wait_phase(objects, "squatter", "Failed")
    ready = condition(current, "Ready")
    assert ready["reason"] == "NameConflict"
    assert "Secret plugin-squatter" in ready["message"]
    events = objects.core.list_namespaced_event(
        objects.ns, field_selector="involvedObject.name=squatter"
    ).items
    assert [(e.type, e.reason) for e in events] == [("Warning", "NameConflict")]
    secret = objects.core.read_namespaced_secret("plugin-squatter", objects.ns)
    assert secret.metadata.owner_references is None
    assert base64.b64decode(secret.data["signing-secret"]) == b"whsec_theirs"


def test_a_plugin_whose_catalog_entry_is_missing_waits_then_resolves(
    synced: Objects, tmp_path: Path
) -> None:
    objects = synced
    install(objects, "ghost", "not-in-catalog")
    current = wait_phase(objects, "ghost", "Pending")
    assert condition(current, "Ready")["reason"] == "CatalogEntryNotFound"
    install(objects, "pinned", "audit-hook", config={"url": "https://h.example.com"})
    patch_spec(objects, "pinned", {"catalogPlugin": {"version": "9.9.9"}})
    current = wait_phase(objects, "pinned", "Failed", generation=2)
    assert condition(current, "Ready")["reason"] == "VersionUnavailable"
    assert current["version"] == "1.2.0"


def test_a_sync_brings_upgrades_and_removals_to_the_installed_plugins(
    objects: Objects, start_operator: Callable[..., Any], database: str, tmp_path: Path
) -> None:
    """An upgrade that adds a high-risk permission asks again; a plugin gone from the catalog
    stops. The sync itself re-reconciles the repository's Plugins (the drift timer is left at
    its default of a minute, beyond the deadline)."""
    git = start(objects, start_operator, database, tmp_path)
    install(objects, "hook", "audit-hook", config={"url": "https://hooks.example.com/x"})
    install(
        objects,
        "recorder",
        "session-recorder",
        config={"bucket": "b"},
        approvedPermissions=["sessions.record"],
    )
    wait_phase(objects, "hook", "Ready")
    assert wait_until(lambda: replicas(objects, "plugin-recorder") == 1, TIMEOUT)
    upgraded = {
        **WEBHOOK,
        "version": "2.0.0",
        "permissions": [*WEBHOOK["permissions"], {"name": "users.admin", "risk": "high"}],
    }
    git.commit(
        plugin_repository(upgraded),
        remove=["plugins/session-recorder/manifest.json"],
        message="2.0.0 asks for more; the recorder leaves",
    )
    objects.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        objects.ns,
        "templaterepositories",
        REPOSITORY,
        {"metadata": {"annotations": {"stream.space/sync-requested": "upgrade"}}},
    )
    current = wait_phase(objects, "hook", "PendingApproval")
    assert current["version"] == "2.0.0"
    assert "users.admin" in condition(current, "Approved")["message"]
    gone = wait_phase(objects, "recorder", "Pending")
    assert condition(gone, "Ready")["reason"] == "CatalogEntryNotFound"
    assert wait_until(lambda: replicas(objects, "plugin-recorder") == 0, TIMEOUT)
    patch_spec(objects, "hook", {"approvedPermissions": ["users.admin"]})
    assert wait_phase(objects, "hook", "Ready")["version"] == "2.0.0"
