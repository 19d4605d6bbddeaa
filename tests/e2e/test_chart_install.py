"""``helm install`` for real, on the local control plane, and least privilege proven.

The chart goes into namespace ``streamspace`` labelled ``pod-security.kubernetes.io/enforce=
restricted``, so the API server itself refuses any pod of the chart that is not compliant; kwok
plays the pods (they run no code), the controller manager makes the Deployments available.

Then the real operator and facade run here as processes with kubeconfigs that carry tokens of
the chart's ServiceAccounts (TokenRequest), and a user's walkthrough runs against them: if the
chart's rules missed anything, the API server answers 403 and a step fails or a process logs it.
``kubectl auth can-i --as=...`` shows what the two identities cannot do.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import Client, WebSocket, token
from gitfixtures import PUBLIC_FORMAT, PUBLIC_FORMAT_TEMPLATES, https_git_server, make_repo
from helm_testing import (
    CHART,
    FACADE_SA,
    NAMESPACE,
    OPERATOR_SA,
    RELEASE,
    Processes,
    Release,
    as_the_chart,
    available,
    can_i,
    installed,
    label_namespace,
)
from plugin_testing import catalog_plugin
from pluginfixtures import RECORDER, plugin_repository
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 90
SESSIONS = "/api/v1/sessions"
REPOS = "/api/v1/catalog/repositories"


@pytest.fixture(scope="module")
def release(full_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    if full_cluster.plane is None:
        pytest.skip("kwok plays the chart's pods on the local control plane only")
    with installed(full_cluster, tmp_path_factory.mktemp("helm")) as release:
        yield release


def test_install_into_a_restricted_namespace(release: Release, api: client.ApiClient) -> None:
    print(f"helm install took {release.install_seconds:.1f} s")
    apps = client.AppsV1Api(api)
    assert wait_until(lambda: available(apps), TIMEOUT), apps.list_namespaced_deployment(NAMESPACE)
    names = {d.metadata.name for d in apps.list_namespaced_deployment(NAMESPACE).items}
    assert names == {"streamspace-operator", "streamspace-facade"}
    status = json.loads(release.helm.run("status", RELEASE, "-n", NAMESPACE, "-o", "json"))
    assert status["info"]["status"] == "deployed", status["info"]
    # the migration hook ran and succeeded (kwok completes the Job's pod; deleted on success)
    hooks = {h["name"]: h for h in status.get("hooks") or []}
    assert hooks["streamspace-migrate"]["last_run"]["phase"] == "Succeeded", hooks
    # the namespace really enforces the restricted standard: a root pod is refused
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api).create_namespaced_pod(
            NAMESPACE,
            {
                "metadata": {"name": "rooted"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        )
    assert refused.value.status == 403 and "PodSecurity" in str(refused.value.body)


# -- the walkthrough under the chart's ServiceAccounts ----------------------------------------

PASSWORD = "a-private-repository-password"


@dataclass
class Walk:
    processes: Processes
    private_url: str


@pytest.fixture
def under_service_accounts(
    release: Release, api: client.ApiClient, database: str, tmp_path: Path
) -> Iterator[Walk]:
    """The processes as the chart's identities. Session pods run desktop images (often as root,
    under s6) and meet the ``baseline`` standard, not ``restricted``: where sessions run, the
    namespace enforces ``baseline`` (docs/INSTALL.md, decision 85)."""
    label_namespace(api, NAMESPACE, "baseline")
    git = make_repo(tmp_path / "private", PUBLIC_FORMAT)
    try:
        # a private repository behind basic auth over HTTPS, for the credentials step
        with (
            https_git_server({"t.git": git.path}, tmp_path, "alice", PASSWORD) as server,
            as_the_chart(
                api, release, database, tmp_path, SYNC_CA_BUNDLE=str(server.ca_bundle)
            ) as processes,
        ):
            yield Walk(processes, f"{server.base_url}/t.git")
    finally:
        label_namespace(api, NAMESPACE, "restricted")


def _phase(caller: Client, sid: str, phase: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        r = caller.get(f"{SESSIONS}/{sid}")
        seen.update(r.body if r.status == 200 else {})
        return seen.get("phase") == phase

    assert wait_until(reached, TIMEOUT, interval=0.5), f"{sid} never reached {phase}: {seen}"
    return seen


def test_walkthrough_under_the_chart_service_accounts_meets_no_403(
    release: Release,
    under_service_accounts: Walk,
    api: client.ApiClient,
    database: str,
    tmp_path: Path,
) -> None:
    url = under_service_accounts.processes.url
    objects = Objects(api, NAMESPACE)
    alice, ops = Client(url, token("alice")), Client(url, token("olga", "operator"))
    objects.create("templates", "firefox-browser", TEMPLATE)

    # create → Running
    r = alice.post(SESSIONS, {"template": "firefox-browser"})
    assert r.status == 201, r
    sid = r.body["id"]
    pod = _phase(alice, sid, "Running")["podName"]
    assert pod
    # no finalizer: an uninstall leaves Sessions that delete with no operator (decision 91)
    assert not (objects.session(sid) or {})["metadata"].get("finalizers")

    # the session's log, followed through the facade
    container = client.CoreV1Api(api).read_namespaced_pod(pod, NAMESPACE).spec.containers[0].name
    release.plane.write_pod_log(NAMESPACE, pod, container, "desktop ready")
    with WebSocket(f"{url}/api/v1/ws/logs/{NAMESPACE}/{pod}", token=token("alice")) as ws:
        assert ws.next().data.endswith(" desktop ready")

    # a terminal in it: the owner chain read and pods/exec, with the facade's identity
    terminal = f"{url}/api/v1/ws/exec/{NAMESPACE}/{pod}?tty=false"
    with WebSocket(terminal, token=token("alice")) as ws:
        ws.send({"type": "stdin", "data": "echo shell ready; exit 4\n"})
        assert ws.next(lambda d: d.get("type") == "stdout").data["data"] == "shell ready\n"
        assert ws.next(lambda d: d.get("type") == "exit").data["code"] == 4

    # hibernate, then a connect wakes it
    r = alice.patch(f"{SESSIONS}/{sid}", {"state": "hibernated"})
    assert r.status == 200, r
    _phase(alice, sid, "Hibernated")
    assert wait_until(lambda: objects.pods(sid) == [], TIMEOUT)
    r = alice.get(f"{SESSIONS}/{sid}/connect")
    assert r.status == 200, r
    connection = r.body["connectionId"]
    _phase(alice, sid, "Running")
    r = alice.post(f"{SESSIONS}/{sid}/heartbeat?connectionId={connection}")
    assert r.status == 200, r

    # a repository synced, its templates installed by the operator (autoInstall)
    git = make_repo(tmp_path / "catalog", PUBLIC_FORMAT)
    r = ops.post(
        REPOS, {"name": "community", "url": git.url, "branch": "main", "autoInstall": True}
    )
    assert r.status == 201, r

    def templates() -> set[str]:
        listed = objects.custom.list_namespaced_custom_object(
            "stream.space", "v1alpha1", NAMESPACE, "templates"
        )
        return {t["metadata"]["name"] for t in listed["items"]}

    assert wait_until(lambda: templates() >= PUBLIC_FORMAT_TEMPLATES, TIMEOUT), templates()
    assert not (objects.get("templaterepositories", "community") or {})["metadata"].get(
        "finalizers"
    )
    r = ops.post(f"{REPOS}/community/sync")
    assert r.status == 202, r

    # a private repository: the facade creates its credential Secret (the one right it has on
    # Secrets), the operator reads it to fetch
    private = {"name": "private", "url": under_service_accounts.private_url}
    r = ops.post(REPOS, {**private, "authType": "basic", "username": "alice", "password": PASSWORD})
    assert r.status == 201, r

    def phase() -> str | None:
        repository = objects.get("templaterepositories", "private") or {}
        return (repository.get("status") or {}).get("phase")

    assert wait_until(lambda: phase() == "Ready", TIMEOUT), objects.get(
        "templaterepositories", "private"
    )
    assert ops.delete(f"{REPOS}/private").status == 204

    # a plugin installed with kubectl: the operator makes its Secret and runtime, owned by it
    plugins = make_repo(tmp_path / "plugins", plugin_repository(RECORDER))
    objects.create("templaterepositories", "plugins", {"url": plugins.url, "type": "plugin"})
    objects.create(
        "plugins",
        "recorder",
        {
            "catalogPlugin": {"repository": "plugins", "name": "session-recorder"},
            "config": {"bucket": "recordings"},
            "approvedPermissions": ["sessions.record"],
        },
    )

    def plugin_phase() -> str | None:
        return ((objects.get("plugins", "recorder") or {}).get("status") or {}).get("phase")

    assert wait_until(lambda: plugin_phase() == "Ready", TIMEOUT), objects.get(
        "plugins", "recorder"
    )
    objects.custom.delete_namespaced_custom_object(
        "stream.space", "v1alpha1", NAMESPACE, "plugins", "recorder"
    )
    objects.custom.delete_namespaced_custom_object(
        "stream.space", "v1alpha1", NAMESPACE, "templaterepositories", "plugins"
    )

    # a plugin: installed with a secret config (the facade creates its Secret, then reads and
    # patches it on a config change), approved, uninstalled
    catalog_id = catalog_plugin(ops, database, NAMESPACE, repository="api-plugins")
    body = {"pluginId": catalog_id, "config": {"url": "https://h.example", "token": "t0ken-123"}}
    r = ops.post("/api/v1/plugins/install", {**body, "name": "hook"})
    assert r.status == 201, r
    config = {"config": {"url": "https://h.example/2", "token": "t0ken-456"}}
    r = ops.request("PUT", "/api/v1/plugins/hook/config", config)
    assert r.status == 200, r
    r = Client(url, token("ada", "admin")).post("/api/v1/plugins/hook/approve")
    assert r.status == 200, r
    assert ops.delete("/api/v1/plugins/hook").status == 204

    # delete: the session and its children go
    assert alice.delete(f"{SESSIONS}/{sid}").status == 204
    assert wait_until(lambda: objects.session(sid) is None, TIMEOUT)
    assert wait_until(lambda: objects.pods(sid) == [], TIMEOUT)
    assert ops.delete(f"{REPOS}/community").status == 204
    assert wait_until(lambda: objects.get("templaterepositories", "community") is None, TIMEOUT)

    under_service_accounts.processes.assert_no_403()


# -- what the identities cannot do --------------------------------------------------------------

CANNOT = {
    FACADE_SA: [
        ("create", "deployments.apps"),
        ("create", "pods"),
        ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("list", "secrets"),
        ("watch", "secrets"),
        ("delete", "secrets"),
        ("impersonate", "users"),
        ("patch", "deployments.apps"),
        ("list", "replicasets.apps"),
        ("create", "sessionquotas.stream.space"),  # quotas are an admin's, never written by us
        ("patch", "sessionquotas.stream.space"),
    ],
    OPERATOR_SA: [
        ("create", "roles.rbac.authorization.k8s.io"),
        ("patch", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"),
        ("delete", "rolebindings.rbac.authorization.k8s.io"),
        ("create", "clusterroles.rbac.authorization.k8s.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
        ("bind", "clusterroles.rbac.authorization.k8s.io"),
        ("escalate", "roles.rbac.authorization.k8s.io"),
        ("watch", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
        ("create", "pods"),
        ("create", "pods/exec"),
        ("list", "nodes"),
        ("impersonate", "users"),
        ("create", "sessionquotas.stream.space"),
        ("delete", "sessionquotas.stream.space"),
    ],
}
CAN = {
    FACADE_SA: [
        ("create", "sessions.stream.space"),
        ("watch", "sessionquotas.stream.space"),
        ("create", "secrets"),
        ("get", "pods/log"),
        # terminals: the owner chain of a session pod read, then pods/exec (owner checked)
        ("get", "replicasets.apps"),
        ("get", "deployments.apps"),
        ("create", "pods/exec"),
        ("get", "pods/exec"),
        ("create", "plugins.stream.space"),
        ("watch", "plugins.stream.space"),
        # a Plugin's Secret plugin-<name> on config changes, its owner uid checked first
        ("get", "secrets"),
        ("patch", "secrets"),
    ],
    OPERATOR_SA: [
        ("create", "deployments.apps"),
        ("patch", "sessions.stream.space/status"),
        ("patch", "plugins.stream.space/status"),
        ("create", "secrets"),  # a kubectl-installed Plugin's Secret, owned by it
        ("watch", "sessionquotas.stream.space"),
    ],
}


@pytest.mark.parametrize("who", [FACADE_SA, OPERATOR_SA], ids=["facade", "operator"])
def test_the_service_accounts_can_do_no_more(release: Release, who: str) -> None:
    def can(verb: str, resource: str, namespace: str = NAMESPACE) -> str:
        return can_i(release.kubeconfig, who, verb, resource, namespace)

    for verb, resource in CAN[who]:
        assert can(verb, resource) == "yes", (who, verb, resource)
    for verb, resource in CANNOT[who]:
        assert can(verb, resource) == "no", (who, verb, resource)
    # and nothing at all in another namespace (not allNamespaces)
    assert can("list", "sessions.stream.space", "default") == "no"
    assert can("create", "deployments.apps", "default") == "no"
    assert can("create", "pods/exec", "default") == "no"


# -- upgrade and uninstall ----------------------------------------------------------------------


def _secret_data(core: client.CoreV1Api, name: str) -> dict[str, str]:
    data: dict[str, str] = core.read_namespaced_secret(name, NAMESPACE).data
    return data


def test_upgrade_keeps_secrets_and_uninstall_keeps_data(
    release: Release, api: client.ApiClient
) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    generated = _secret_data(core, "streamspace-secrets")
    database = _secret_data(core, "streamspace-postgresql")
    assert all(len(base64.b64decode(v)) >= 32 for v in generated.values()), generated.keys()

    release.helm.run(
        "upgrade", RELEASE, str(CHART), "-n", NAMESPACE, "--wait", "--timeout", "5m",
        "--set", "facade.replicas=3", "--set", "config.IDLE_CHECK_INTERVAL=45s",
    )  # fmt: skip
    assert apps.read_namespaced_deployment("streamspace-facade", NAMESPACE).spec.replicas == 3
    config = core.read_namespaced_config_map("streamspace-config", NAMESPACE).data
    assert config["IDLE_CHECK_INTERVAL"] == "45s"
    assert _secret_data(core, "streamspace-secrets") == generated
    assert _secret_data(core, "streamspace-postgresql") == database

    # a user's home volume, as the operator leaves it
    home = "home-uninstall-check"
    core.create_namespaced_persistent_volume_claim(
        NAMESPACE,
        {
            "metadata": {"name": home, "labels": {"app.kubernetes.io/managed-by": "streamspace"}},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    try:
        release.helm.run("uninstall", RELEASE, "-n", NAMESPACE, "--wait")
        # gone: the workloads, their identities and rules, the admission policy
        assert apps.list_namespaced_deployment(NAMESPACE).items == []
        assert (
            core.list_namespaced_service_account(
                NAMESPACE, label_selector="app.kubernetes.io/instance=streamspace"
            ).items
            == []
        )
        policies = client.AdmissionregistrationV1Api(api).list_validating_admission_policy()
        assert f"{NAMESPACE}.sessions.stream.space" not in {p.metadata.name for p in policies.items}
        # kept: the CRDs, the home volume, the database's volume and the generated secrets
        crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        assert {"sessions.stream.space", "templates.stream.space"} <= {
            c.metadata.name for c in crds
        }
        claims = {p.metadata.name for p in core.list_namespaced_persistent_volume_claim(
            NAMESPACE).items}  # fmt: skip
        assert {home, "data-streamspace-postgresql-0"} <= claims
        assert _secret_data(core, "streamspace-secrets") == generated
        assert _secret_data(core, "streamspace-postgresql") == database

        # installing again takes the kept secrets and database back
        release.helm.run("install", RELEASE, str(CHART), "-n", NAMESPACE, "--wait")
        assert _secret_data(core, "streamspace-secrets") == generated
        assert _secret_data(core, "streamspace-postgresql") == database
        assert wait_until(lambda: available(apps), TIMEOUT)
    finally:
        core.delete_namespaced_persistent_volume_claim(home, NAMESPACE)


def test_kept_objects_are_what_install_md_says(release: Release) -> None:
    """docs/INSTALL.md lists what an uninstall keeps; the chart marks exactly those."""
    text = (CHART.parents[1] / "docs" / "INSTALL.md").read_text()
    kept = [
        o
        for o in yaml.safe_load_all(release.helm.run("get", "manifest", RELEASE, "-n", NAMESPACE))
        if o and (o["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    ]
    assert {o["metadata"]["name"] for o in kept} == {
        "streamspace-secrets",
        "streamspace-postgresql",
    }
    for o in kept:
        assert o["metadata"]["name"].replace("streamspace-", "<release>-") in text
