"""Watches that come back to a changed world: etcd restarted, the API server answering 410 Gone.

The operator and the facade (real processes) reach the kube-apiserver through a relay. The relay
stalls (a partition: nothing they send or receive gets through) while an admin creates a
Session, the API server and etcd are killed and restarted, and the admin hibernates and deletes
Sessions. Then the partition ends with every connection reset; the processes resume their
watches from the resourceVersion they had, as Kubernetes' own clients do, and the new server,
whose watch cache starts after the first change, answers ``410 Gone``: the operator, the
facade's informer (its WebSocket streams) and the mirror must each list again, and lose none of
the changes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from facade_testing import Client, WebSocket, token
from faults import Faults, Stack, mirror_keys, running_stack, session_keys
from streamspace.naming import workload_name
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, close_pools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

TIMEOUT = 240.0  # generous: the API server has just restarted on a busy machine
SESSIONS = "/api/v1/sessions"


@pytest.fixture
def stack(faults: Faults) -> Iterator[Stack]:
    with running_stack(faults, via_relay=True, verbose=True) as running:  # Kopf's 410s: debug
        yield running


def phase(custom: client.CustomObjectsApi, namespace: str, name: str) -> str | None:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "sessions", name)
    return (obj.get("status") or {}).get("phase")


def replicas(apps: client.AppsV1Api, namespace: str, session: str) -> int | None:
    try:
        found = apps.read_namespaced_deployment(workload_name(session), namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return int(found.spec.replicas)


def first_watch_event(api: client.ApiClient, namespace: str, version: str) -> dict[str, Any]:
    """The first event of a watch on the namespace's Sessions resumed from ``version``."""
    response = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "sessions",
        watch=True,
        resource_version=version,
        timeout_seconds=5,
        _preload_content=False,
    )
    try:
        event: dict[str, Any] = json.loads(response.readline())
    finally:
        response.release_conn()
    return event


def snapshot(stream: WebSocket) -> dict[str, str]:
    """Session → phase in the stream's latest ``sessions_update``."""
    updates = [
        m
        for m in stream.drain()
        if isinstance(m.data, dict) and m.data.get("type") == "sessions_update"
    ]
    assert updates, "no sessions_update received"
    return {s["id"]: str(s.get("phase")) for s in updates[-1].data["sessions"]}


def test_changes_made_during_restarts_reach_everyone_after_410(stack: Stack) -> None:
    alice = Client(stack.url, token("alice"))
    names = []
    for _ in range(3):
        reply = alice.post(SESSIONS, {"template": "firefox"})
        assert reply.status == 201, reply
        names.append(reply.body["id"])
    kept, hibernated, deleted = names
    relay = stack.relay
    assert relay is not None
    with stack.faults.api_client() as api:
        custom = client.CustomObjectsApi(api)
        assert wait_until(
            lambda: all(phase(custom, stack.namespace, n) == "Running" for n in names), TIMEOUT
        )
        before = session_keys(api, stack.namespace)
        assert wait_until(lambda: mirror_keys(stack.database, stack.namespace) == before, TIMEOUT)
        listed = custom.list_namespaced_custom_object(GROUP, VERSION, stack.namespace, "sessions")
        version = listed["metadata"]["resourceVersion"]
        old = WebSocket(f"{stack.url}/api/v1/ws/sessions", token=token("alice")).open()
        close_pools(api)

    # A partition: the processes hear nothing from here on, and what they send is held.
    relay.stall()
    created = "alice-behind-the-partition"
    # a change before the restart: the new server's watch cache starts after every version the
    # processes saw, so their resumed watches are answered 410
    with stack.faults.api_client() as api:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP,
            VERSION,
            stack.namespace,
            "sessions",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Session",
                "metadata": {"name": created},
                "spec": {"user": "alice", "template": "firefox"},
            },
        )
        close_pools(api)
    began = time.monotonic()
    stack.faults.plane.restart("kube-apiserver")
    api_back = time.monotonic() - began
    stack.faults.plane.restart("etcd")
    etcd_back = time.monotonic() - began - api_back
    with stack.faults.api_client() as api:
        custom = client.CustomObjectsApi(api)
        custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            stack.namespace,
            "sessions",
            hibernated,
            {"spec": {"state": "hibernated"}},
        )
        custom.delete_namespaced_custom_object(GROUP, VERSION, stack.namespace, "sessions", deleted)
        gone = first_watch_event(api, stack.namespace, version)  # what the processes will hear
        assert gone["type"] == "ERROR" and gone["object"]["code"] == 410, gone
        close_pools(api)

    # The partition ends with every connection reset (the held bytes are lost): the processes
    # resume their watches from the versions they had, and are answered 410.
    relay.cut()
    relay.restore()
    healed = time.monotonic()
    with stack.faults.api_client() as api:
        custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        # the operator: the new Session runs, the hibernated one has no replicas
        assert wait_until(lambda: phase(custom, stack.namespace, created) == "Running", TIMEOUT)
        assert wait_until(lambda: replicas(apps, stack.namespace, hibernated) == 0, TIMEOUT)
        assert wait_until(
            lambda: phase(custom, stack.namespace, hibernated) == "Hibernated", TIMEOUT
        )
        operator_caught_up = time.monotonic() - healed

        # the mirror: row for row the CRs, the deleted Session gone
        def mirror_differs() -> set[Any]:
            return session_keys(api, stack.namespace) ^ mirror_keys(stack.database, stack.namespace)

        assert wait_until(lambda: not mirror_differs(), TIMEOUT), sorted(mirror_differs())
        mirror_caught_up = time.monotonic() - healed
        close_pools(api)
    rows = {key[1] for key in mirror_keys(stack.database, stack.namespace)}
    assert rows == {kept, hibernated, created}

    # the informer: the stream open throughout and a new one both show the world as it is
    want = {kept: "Running", hibernated: "Hibernated", created: "Running"}
    assert wait_until(lambda: snapshot(old) == want, TIMEOUT), snapshot(old)
    informer_caught_up = time.monotonic() - healed
    old.close()
    fresh = WebSocket(f"{stack.url}/api/v1/ws/sessions", token=token("alice")).open()
    try:
        assert wait_until(lambda: bool(fresh.drain()), TIMEOUT)
        assert snapshot(fresh) == want
    finally:
        fresh.close()
    listed_now = alice.get(SESSIONS)
    assert listed_now.status == 200
    assert {s["id"] for s in listed_now.body["sessions"]} == set(want)

    told_gone = [
        r["message"]
        for r in stack.facade.records()
        if "expired" in r["message"] and "too old resource version" in r["message"]
    ]
    # the facade's informer and its mirror were each answered 410 on Sessions and listed again
    for reader in ("streams", "mirror"):
        assert any(m.startswith(f"{reader}: watch of Session") for m in told_gone), told_gone
    restarts = [
        r
        for r in stack.operator.records()
        if r["message"].startswith("Restarting the watch-stream")
    ]
    assert any("sessions" in r["message"] for r in restarts), "Kopf was not answered 410"
    print(
        f"\nkube-apiserver restart {api_back:.1f} s, etcd restart {etcd_back:.1f} s;"
        f" after the relay let the watches through: operator {operator_caught_up:.1f} s,"
        f" mirror {mirror_caught_up:.1f} s, informer {informer_caught_up:.1f} s"
    )
