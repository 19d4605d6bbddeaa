"""An upgrade whose new CRDs are not applied yet (``helm upgrade`` leaves ``crds/`` alone): the
API server does not serve Plugins. The mirror must still mirror Sessions, show no plugins, and
pick Plugins up once their CRD is applied, without a restart.

The test removes the real ``plugins.stream.space`` CRD from the shared control plane and applies
it again at the end (tests run one at a time; no other test's Plugins exist meanwhile)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import Client, FacadeThread, token
from streamspace import API_GROUP, API_VERSION
from streamspace_dev.objects import apply_crds
from streamspace_dev.process import wait_until
from streamspace_dev.settings import REPO_CRDS
from streamspace_facade import mirror
from streamspace_facade.state import SERVICES
from streamspace_testing import Objects

pytestmark = pytest.mark.integration

CRD = "plugins.stream.space"


def _served(api: client.ApiClient, namespace: str) -> bool:
    try:
        client.CustomObjectsApi(api).list_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, "plugins"
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


@pytest.fixture
def without_plugin_crd(cluster: Any, api: client.ApiClient, namespace: str) -> Iterator[None]:
    extensions = client.ApiextensionsV1Api(api)
    extensions.delete_custom_resource_definition(CRD)
    try:
        assert wait_until(lambda: not _served(api, namespace), 60)
        yield
    finally:
        apply_crds(cluster.kubeconfig, REPO_CRDS)


def test_a_kind_whose_crd_is_missing_is_mirrored_as_empty_until_it_is_applied(
    cluster: Any,
    api: client.ApiClient,
    namespace: str,
    database: str,
    without_plugin_crd: None,
    start_facade: Callable[..., FacadeThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mirror, "MISSING_KIND_RECHECK", 1.0)
    objects = Objects(api, namespace)
    objects.create("sessions", "s1", {"user": "alice", "template": "firefox"})
    facade = start_facade(DATABASE_URL=database)
    assert facade.app is not None
    # every table resynced (plugins as empty): the mirror is ready, not restarting
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60)
    alice = Client(facade.url, token("alice"))
    listed = alice.get("/api/v1/sessions").body
    assert [s["id"] for s in listed["sessions"]] == ["s1"]
    ops = Client(facade.url, token("olga", "operator"))
    assert ops.get("/api/v1/plugins/installed").body["plugins"] == []

    apply_crds(cluster.kubeconfig, REPO_CRDS)
    objects.create(
        "plugins", "audit", {"catalogPlugin": {"repository": "plugins", "name": "audit-hook"}}
    )

    def shown() -> list[str]:
        return [p["id"] for p in ops.get("/api/v1/plugins/installed").body["plugins"]]

    assert wait_until(lambda: shown() == ["audit"], 60), shown()
    # and the sessions kept being followed all along
    objects.create("sessions", "s2", {"user": "alice", "template": "firefox"})

    def sessions() -> list[str]:
        return sorted(s["id"] for s in alice.get("/api/v1/sessions").body["sessions"])

    assert wait_until(lambda: sessions() == ["s1", "s2"], 30), sessions()
