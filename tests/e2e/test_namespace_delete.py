"""No stuck deletes (decision 91), the way users meet them: a namespace full of StreamSpace
objects is deleted after the operator is gone, and really goes. Namespace deletion needs the
controller manager's namespace controller, so this runs on the full profile (kwok nodes)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace_dev.process import wait_until
from streamspace_operator.release import FINALIZER
from streamspace_testing import GROUP, TEMPLATE, TIMEOUT, VERSION, Objects

pytestmark = pytest.mark.e2e

GONE_TIMEOUT = 180  # the namespace controller deletes kind by kind, kwok pods included


@pytest.fixture
def doomed(full_cluster: Any, api: client.ApiClient) -> Iterator[str]:
    """A namespace the test deletes itself; removed afterwards only if the test left it."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def namespace_gone(api: client.ApiClient, name: str) -> bool:
    try:
        client.CoreV1Api(api).read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def left_in(objects: Objects) -> dict[str, list[str]]:
    """What is still there of our kinds, with each object's finalizers: the failure message."""
    left = {}
    for plural in ("sessions", "templates", "connections", "templaterepositories"):
        items = objects.custom.list_namespaced_custom_object(GROUP, VERSION, objects.ns, plural)
        for item in items["items"]:
            left[f"{plural}/{item['metadata']['name']}"] = item["metadata"].get("finalizers", [])
    return left


def test_namespace_with_sessions_goes_once_the_operator_is_gone(
    api: client.ApiClient, doomed: str, start_operator: Callable[..., Any]
) -> None:
    objects = Objects(api, doomed)
    operator = start_operator(NAMESPACE=doomed)
    objects.create("templates", "firefox", TEMPLATE)
    for user in ("alice", "bob"):
        objects.create("sessions", f"{user}-firefox", {"user": user, "template": "firefox"})
    objects.create("connections", "c1", {"session": "alice-firefox", "user": "alice"})
    objects.create("templaterepositories", "repo", {"url": "file:///nowhere.git"})
    for user in ("alice", "bob"):
        objects.wait_phase(f"{user}-firefox", "Running")
    assert wait_until(
        lambda: ((objects.get("templaterepositories", "repo") or {}).get("status") or {}).get(
            "phase"
        ),
        TIMEOUT,
    )

    operator.stop()
    client.CoreV1Api(api).delete_namespace(doomed)
    assert wait_until(lambda: namespace_gone(api, doomed), GONE_TIMEOUT), left_in(objects)


def test_release_finalizers_frees_a_namespace_an_older_version_holds(
    api: client.ApiClient, doomed: str, cluster: Any
) -> None:
    """An older operator's finalizer holds a terminating namespace until the command runs."""
    objects = Objects(api, doomed)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Session",
        "metadata": {"name": "alice-firefox", "finalizers": [FINALIZER]},
        "spec": {"user": "alice", "template": "firefox"},
    }
    objects.custom.create_namespaced_custom_object(GROUP, VERSION, doomed, "sessions", body)
    client.CoreV1Api(api).delete_namespace(doomed)

    def held() -> bool:  # the namespace controller got to the session, which waits for us
        meta = (objects.session("alice-firefox") or {}).get("metadata") or {}
        return bool(meta.get("deletionTimestamp"))

    assert wait_until(held, GONE_TIMEOUT)
    assert not namespace_gone(api, doomed)

    argv = [sys.executable, "-m", "streamspace.cli", "operator", "--release-finalizers"]
    done = subprocess.run(
        [*argv, f"--namespace={doomed}"],
        env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("released 1 object(s)"), done.stdout
    assert wait_until(lambda: namespace_gone(api, doomed), GONE_TIMEOUT), left_in(objects)
