"""An upgrade whose SessionQuota CRD is not applied yet (``helm upgrade`` leaves ``crds/``
alone): sessions still start through the operator and REST creates still succeed, with no quota
in force; once the CRD is applied, quotas hold without a restart.

The test removes the real ``sessionquotas.stream.space`` CRD from the shared control plane and
applies it again at the end (tests run one at a time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from facade_testing import Client, FacadeThread, token
from streamspace import API_GROUP, API_VERSION
from streamspace_dev.objects import apply_crds
from streamspace_dev.process import wait_until
from streamspace_dev.settings import REPO_CRDS
from streamspace_facade.state import SERVICES
from streamspace_testing import TEMPLATE, TIMEOUT, Objects

pytestmark = pytest.mark.integration

CRD = "sessionquotas.stream.space"


def _served(api: client.ApiClient) -> bool:
    """Whether discovery lists SessionQuotas."""
    found = client.CustomObjectsApi(api).get_api_resources(API_GROUP, API_VERSION).resources
    return any(r.name == "sessionquotas" for r in found)


@pytest.fixture
def without_quota_crd(cluster: Any, api: client.ApiClient, namespace: str) -> Iterator[None]:
    client.ApiextensionsV1Api(api).delete_custom_resource_definition(CRD)
    try:
        assert wait_until(lambda: not _served(api), 60)
        yield
    finally:
        apply_crds(cluster.kubeconfig, REPO_CRDS)


def test_sessions_start_without_the_quota_crd_and_quotas_hold_once_it_is_applied(
    cluster: Any,
    api: client.ApiClient,
    namespace: str,
    database: str,
    without_quota_crd: None,
    start_operator: Callable[..., Any],
    start_facade: Callable[..., FacadeThread],
) -> None:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    start_operator()
    facade = start_facade(DATABASE_URL=database)
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60)
    objects.create("sessions", "alice-1", {"user": "alice", "template": "firefox"})
    assert wait_until(lambda: objects.deployment("alice-1") is not None, TIMEOUT)
    alice = Client(facade.url, token("alice"))
    assert alice.post("/api/v1/sessions", {"template": "firefox"}).status == 201

    apply_crds(cluster.kubeconfig, REPO_CRDS)
    assert wait_until(lambda: _served(api), 60)
    objects.create("sessionquotas", "one", {"default": True, "limits": {"runningSessions": 1}})
    refused = alice.post("/api/v1/sessions", {"template": "firefox"})
    assert refused.status == 403 and refused.body["code"] == "QUOTA_EXCEEDED", refused
