"""No stuck deletes (decision 91): the operator puts no finalizer on our objects, so they delete
with no operator running; its timers still stop when their object goes; and the finalizer of
older versions is released, by a new operator or by ``streamspace operator --release-finalizers``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace_dev.process import wait_until
from streamspace_operator.release import FINALIZER
from streamspace_testing import GROUP, TEMPLATE, TIMEOUT, VERSION, Objects

pytestmark = pytest.mark.integration

FOREIGN = "example.com/keep"  # someone else's finalizer: never ours to remove
# One object of every kind the operator handles, as (plural, name, spec).
OBJECTS = [
    ("templates", "firefox", TEMPLATE),
    ("sessions", "alice-firefox", {"user": "alice", "template": "firefox"}),
    ("connections", "c1", {"session": "alice-firefox", "user": "alice"}),
    ("templaterepositories", "repo", {"url": "file:///nowhere.git"}),
]


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


def create_all(objects: Objects, finalizers: list[str] | None = None) -> None:
    for plural, name, spec in OBJECTS:
        kind = {"templates": "Template", "sessions": "Session", "connections": "Connection"}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind.get(plural, "TemplateRepository"),
            "metadata": {"name": name, "finalizers": finalizers or []},
            "spec": spec,
        }
        objects.custom.create_namespaced_custom_object(GROUP, VERSION, objects.ns, plural, body)


def finalizers(objects: Objects) -> dict[str, list[str]]:
    found = {name: objects.get(plural, name) for plural, name, _ in OBJECTS}
    return {
        name: (obj or {}).get("metadata", {}).get("finalizers") or [] for name, obj in found.items()
    }


def handled(objects: Objects) -> bool:
    """Each object has had a handler's write (Kopf adds its finalizer before running handlers)."""
    template = (objects.get("templates", "firefox") or {}).get("status") or {}
    repo = (objects.get("templaterepositories", "repo") or {}).get("status") or {}
    return bool(
        template.get("observedGeneration")
        and objects.status("alice-firefox").get("phase")
        and repo.get("phase") == "Failed"  # no database configured: handled, and said so
    )


def delete_all(objects: Objects) -> None:
    """Delete every object; one gone already is fine (a Connection without heartbeats is
    removed as stale by the operator after STALE_AFTER, which a slow machine can reach)."""
    for plural, name, _ in OBJECTS:
        try:
            objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise


def all_gone(objects: Objects) -> bool:
    return all(objects.get(plural, name) is None for plural, name, _ in OBJECTS)


def timer_runners() -> Counter[str]:
    """Kopf's timer tasks alive in this process, by handler id ("runner of <id>")."""
    names = Counter[str]()
    for obj in gc.get_objects():
        if isinstance(obj, asyncio.Task) and not obj.done():
            name = obj.get_name()
            if name.startswith("runner of "):
                names[name.removeprefix("runner of ")] += 1
    return names


def test_objects_get_no_finalizer_and_delete_with_no_operator(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    operator = start_operator()
    create_all(objects)
    assert wait_until(lambda: handled(objects), TIMEOUT), "the operator never handled them"
    assert finalizers(objects) == {name: [] for _, name, _ in OBJECTS}

    operator.stop()
    delete_all(objects)
    assert wait_until(lambda: all_gone(objects), TIMEOUT), finalizers(objects)


def test_timers_stop_when_their_session_is_deleted(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    """Without a finalizer the DELETED event is all Kopf sees; the timers must stop on it."""
    timers = ("session_drift", "stale_check", "idle_check")
    start_operator()
    objects.create("templates", "firefox", TEMPLATE)
    for name in ("s1", "s2"):
        objects.create("sessions", name, {"user": "alice", "template": "firefox"})

    def runners(count: int) -> bool:
        alive = timer_runners()
        return all(alive[t] == count for t in timers)

    assert wait_until(lambda: runners(2), TIMEOUT), timer_runners()
    objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", "s1")
    assert wait_until(lambda: runners(1), TIMEOUT), timer_runners()
    assert objects.session("s2") is not None


def test_operator_releases_the_finalizer_of_an_older_version(
    objects: Objects, start_operator: Callable[..., Any]
) -> None:
    create_all(objects, [FINALIZER, FOREIGN])
    start_operator()
    assert wait_until(
        lambda: finalizers(objects) == {name: [FOREIGN] for _, name, _ in OBJECTS}, TIMEOUT
    ), finalizers(objects)
    for plural, name, _ in OBJECTS:  # someone else's finalizer is for them to remove
        objects.custom.patch_namespaced_custom_object(
            GROUP, VERSION, objects.ns, plural, name, {"metadata": {"finalizers": None}}
        )


def release(cluster: Any, namespace: str) -> str:
    argv = [sys.executable, "-m", "streamspace.cli", "operator", "--release-finalizers"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    done = subprocess.run(
        [*argv, f"--namespace={namespace}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_release_finalizers_frees_objects_of_an_older_version(
    cluster: Any, objects: Objects
) -> None:
    """No operator at all: objects an older version finalized, one already being deleted."""
    create_all(objects, [FINALIZER])
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-firefox"
    )
    stuck = objects.session("alice-firefox") or {}
    assert stuck["metadata"].get("deletionTimestamp"), "the old finalizer holds the deletion"
    objects.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        objects.ns,
        "templates",
        "firefox",
        {"metadata": {"finalizers": [FOREIGN, FINALIZER]}},
    )

    assert (
        release(cluster, objects.ns)
        == f"released 4 object(s) from {FINALIZER} in namespace {objects.ns}"
    )
    assert wait_until(lambda: objects.session("alice-firefox") is None, TIMEOUT)
    left = finalizers(objects)
    assert left == {"firefox": [FOREIGN], "alice-firefox": [], "c1": [], "repo": []}
    assert release(cluster, objects.ns).startswith("released 0 object(s)")  # idempotent

    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "templates", "firefox", {"metadata": {"finalizers": None}}
    )
