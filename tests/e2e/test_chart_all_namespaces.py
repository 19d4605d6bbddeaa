"""The chart with ``allNamespaces``: ClusterRoles that are enough, and no more, proven for real.

Installed from ``ci/all-namespaces-values.yaml`` (ClusterRoles, a ClusterKopfPeering, an operator
standby), then the real operator and facade run under the chart's ServiceAccount tokens with
``ALL_NAMESPACES=true`` while a user's Session lives in a tenant namespace of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from facade_testing import Client, WebSocket, token
from helm_testing import (
    CHART,
    FACADE_SA,
    NAMESPACE,
    OPERATOR_SA,
    Release,
    as_the_chart,
    available,
    can_i,
    installed,
)
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 90
SESSIONS = "/api/v1/sessions"


@pytest.fixture(scope="module")
def release(full_cluster: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    if full_cluster.plane is None:
        pytest.skip("kwok plays the chart's pods on the local control plane only")
    values = str(CHART / "ci" / "all-namespaces-values.yaml")
    with installed(full_cluster, tmp_path_factory.mktemp("helm"), "-f", values) as release:
        yield release


def test_a_tenant_session_runs_under_the_cluster_roles_with_no_403(
    release: Release, api: client.ApiClient, database: str, namespace: str, tmp_path: Path
) -> None:
    apps = client.AppsV1Api(api)
    assert wait_until(lambda: available(apps), TIMEOUT)
    operator = apps.read_namespaced_deployment("streamspace-operator", NAMESPACE)
    assert operator.spec.replicas == 2
    assert "--priority=oldest" in operator.spec.template.spec.containers[0].args

    tenant = Objects(api, namespace)  # a namespace the release was not installed in
    tenant.create("templates", "firefox-browser", TEMPLATE)
    # the user's Session, applied with kubectl (here as an admin, for alice)
    tenant.create("sessions", "alice-desk", {"user": "alice", "template": "firefox-browser"})
    with as_the_chart(api, release, database, tmp_path, ALL_NAMESPACES="true") as processes:
        alice = Client(processes.url, token("alice"))
        path = f"{SESSIONS}/alice-desk?namespace={namespace}"

        def phase(wanted: str) -> bool:
            r = alice.get(path)
            return r.status == 200 and r.body["phase"] == wanted

        assert wait_until(lambda: phase("Running"), TIMEOUT), alice.get(path)
        pod = alice.get(path).body["podName"]
        container = client.CoreV1Api(api).read_namespaced_pod(pod, namespace).spec.containers[0]
        release.plane.write_pod_log(namespace, pod, container.name, "tenant desktop ready")
        logs = f"{processes.url}/api/v1/ws/logs/{namespace}/{pod}"
        with WebSocket(logs, token=token("alice")) as ws:
            assert ws.next().data.endswith(" tenant desktop ready")

        r = alice.patch(path, {"state": "hibernated"})
        assert r.status == 200, r
        assert wait_until(lambda: phase("Hibernated"), TIMEOUT), alice.get(path)
        r = alice.get(f"{SESSIONS}/alice-desk/connect?namespace={namespace}")
        assert r.status == 200, r
        assert wait_until(lambda: phase("Running"), TIMEOUT), alice.get(path)
        assert alice.delete(path).status == 204
        assert wait_until(lambda: tenant.session("alice-desk") is None, TIMEOUT)
        assert wait_until(lambda: tenant.pods("alice-desk") == [], TIMEOUT)
        processes.assert_no_403()

    # cluster-wide, and still no more than needed
    for who, verb, resource, answer in (
        (OPERATOR_SA, "create", "deployments.apps", "yes"),
        (OPERATOR_SA, "list", "clusterkopfpeerings.kopf.dev", "yes"),
        (OPERATOR_SA, "create", "rolebindings.rbac.authorization.k8s.io", "no"),
        (OPERATOR_SA, "create", "pods", "no"),
        # a Plugin's Secret is read by name (its owner checked); the operator could already
        # list Secrets (repository credentials, by type), so this widens nothing
        (OPERATOR_SA, "get", "secrets", "yes"),
        (OPERATOR_SA, "delete", "secrets", "no"),
        (FACADE_SA, "list", "sessions.stream.space", "yes"),
        (FACADE_SA, "get", "pods/log", "yes"),
        (FACADE_SA, "create", "pods/exec", "yes"),
        (FACADE_SA, "get", "replicasets.apps", "yes"),
        # Sessions are created in the release namespace only; kubectl users make their own
        (FACADE_SA, "create", "sessions.stream.space", "no"),
        (FACADE_SA, "create", "secrets", "no"),
        (FACADE_SA, "list", "secrets", "no"),
        (FACADE_SA, "create", "deployments.apps", "no"),
    ):
        assert can_i(release.kubeconfig, who, verb, resource, namespace) == answer, (
            who,
            verb,
            resource,
        )
