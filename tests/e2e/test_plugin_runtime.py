"""A runnable plugin end to end: the real operator against the full-profile control plane (the
controller manager makes its pod, kwok nodes run it, the garbage collector removes what the
Plugin owned)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from gitfixtures import make_repo
from pluginfixtures import RECORDER, plugin_repository
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, TIMEOUT, VERSION, Objects

pytestmark = pytest.mark.e2e


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


def plugin_status(objects: Objects) -> dict[str, Any]:
    return dict((objects.get("plugins", "recorder") or {}).get("status") or {})


def pods(objects: Objects) -> list[Any]:
    selector = "stream.space/plugin=recorder"
    return [
        p
        for p in objects.core.list_namespaced_pod(objects.ns, label_selector=selector).items
        if not p.metadata.deletion_timestamp
    ]


def exists(read: Callable[[str, str], Any], name: str, ns: str) -> bool:
    try:
        read(name, ns)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def test_an_approved_plugin_runs_is_ready_stops_when_disabled_and_goes_with_its_plugin(
    objects: Objects, start_operator: Callable[..., Any], database: str, tmp_path: Path
) -> None:
    migrate(database)
    git = make_repo(tmp_path / "plugins", plugin_repository(RECORDER))
    start_operator(
        DATABASE_URL=database, ALLOW_LOCAL_REPOS="true", SYNC_WORK_DIR=str(tmp_path / "work")
    )
    objects.create("templaterepositories", "official-plugins", {"url": git.url, "type": "plugin"})
    objects.create(
        "plugins",
        "recorder",
        {
            "catalogPlugin": {"repository": "official-plugins", "name": "session-recorder"},
            "config": {"bucket": "recordings"},
            "approvedPermissions": ["sessions.record"],
        },
    )
    assert wait_until(lambda: plugin_status(objects).get("phase") == "Ready", TIMEOUT), (
        plugin_status(objects)
    )
    ready = next(c for c in plugin_status(objects)["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    [pod] = pods(objects)
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.containers[0].image == RECORDER["image"]

    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "plugins", "recorder", {"spec": {"enabled": False}}
    )
    assert wait_until(lambda: plugin_status(objects).get("phase") == "Disabled", TIMEOUT)
    assert wait_until(lambda: pods(objects) == [], TIMEOUT)

    # Uninstall: the garbage collector removes everything the Plugin owned.
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "plugins", "recorder"
    )
    networking = client.NetworkingV1Api(objects.apps.api_client)
    readers = [
        objects.apps.read_namespaced_deployment,
        objects.core.read_namespaced_service,
        objects.core.read_namespaced_secret,
        networking.read_namespaced_network_policy,
    ]
    assert wait_until(
        lambda: not any(exists(read, "plugin-recorder", objects.ns) for read in readers), TIMEOUT
    )
