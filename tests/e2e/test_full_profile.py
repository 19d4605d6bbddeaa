"""The full profile: a Deployment gets a Pod that is scheduled on a kwok node and becomes Ready."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from streamspace_dev.objects import FAKE_NODES
from streamspace_dev.process import wait_until

pytestmark = pytest.mark.e2e


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "lscr.io/linuxserver/firefox:latest",
                            "ports": [{"containerPort": 3000}],
                            "readinessProbe": {"tcpSocket": {"port": 3000}},
                        }
                    ]
                },
            },
        },
    }


def test_deployment_pods_become_ready_and_go_away(
    full_cluster: Any, api: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    nodes = core.list_node().items
    assert {n.metadata.name for n in nodes} >= set(FAKE_NODES)

    apps.create_namespaced_deployment(namespace, deployment("web", 2))

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        return (status.available_replicas or 0) == 2

    assert wait_until(available, 90), apps.read_namespaced_deployment_status("web", namespace)
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.node_name in FAKE_NODES
        assert pod.status.phase == "Running"
        assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)

    # Scale to zero (what hibernation does): the pods are deleted and disappear.
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    assert wait_until(
        lambda: not core.list_namespaced_pod(namespace, label_selector="app=web").items, 90
    )
