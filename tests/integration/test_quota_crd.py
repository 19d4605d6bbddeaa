"""The SessionQuota CRD against a real kube-apiserver: what it accepts, rejects (with field
paths), defaults and shows in ``kubectl get``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from test_crds import table

from streamspace_testing import GROUP, VERSION

pytestmark = pytest.mark.integration


def quota(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "SessionQuota",
        "metadata": {"name": name},
        "spec": spec,
    }


def create(api: client.ApiClient, ns: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, "sessionquotas", body
    )
    return created


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"limits": {"sessions": 1}}, "spec.users"),  # selects nobody
        ({"users": [], "default": False, "limits": {}}, "spec.users"),
        ({"default": True}, "spec.limits"),
        ({"default": True, "limits": {"sessions": -1}}, "spec.limits.sessions"),
        ({"default": True, "limits": {"runningSessions": "2"}}, "spec.limits.runningSessions"),
        ({"default": True, "limits": {"cpu": "lots"}}, "spec.limits.cpu"),
        ({"default": True, "limits": {"memory": "-1Gi"}}, "spec.limits.memory"),
        ({"default": True, "limits": {"storage": "10 Gi"}}, "spec.limits.storage"),
        ({"default": True, "limits": {"gpus": 1.5}}, "spec.limits.gpus"),
        ({"users": ["Alice_1"], "limits": {}}, "spec.users[0]"),
    ],
)
def test_invalid_quotas_are_rejected_with_field_paths(
    api: client.ApiClient, namespace: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as caught:
        create(api, namespace, quota("bad", spec))
    assert caught.value.status == 422, caught.value.body
    status = json.loads(caught.value.body)
    fields = {c.get("field", "") for c in status["details"]["causes"]}
    assert field in fields, status


def test_a_valid_quota_is_stored_defaulted_and_listed(
    api: client.ApiClient, namespace: str
) -> None:
    limits = {"sessions": 5, "runningSessions": 2, "cpu": "4", "memory": "8Gi", "gpus": 1}
    stored = create(api, namespace, quota("staff", {"groups": ["staff"], "limits": limits}))
    assert stored["spec"]["default"] is False
    assert stored["spec"]["limits"] == limits
    found = table(api, namespace, "sessionquotas")
    columns = [c["name"] for c in found["columnDefinitions"]]
    assert columns[:9] == [
        "Name",
        "Users",
        "Groups",
        "Default",
        "Sessions",
        "Running",
        "CPU",
        "Memory",
        "Age",
    ]
    assert found["rows"][0]["cells"][4:8] == [5, 2, "4", "8Gi"]
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(
        "sessionquotas.stream.space"
    )
    assert crd.spec.names.short_names == ["sq"] and crd.spec.scope == "Namespaced"


def test_the_example_quotas_are_accepted(api: client.ApiClient, namespace: str) -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "sessionquota.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        create(api, namespace, doc)
    assert [d["metadata"]["name"] for d in docs] == ["everyone", "staff", "alice"]
