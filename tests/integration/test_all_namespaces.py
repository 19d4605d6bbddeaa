"""A facade serving every namespace (``ALL_NAMESPACES``): sessions found by id wherever they are."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from facade_testing import Client, FacadeThread, token
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import Objects, new_namespace

pytestmark = pytest.mark.integration


@pytest.fixture
def other(api: client.ApiClient) -> Iterator[str]:
    with new_namespace(api) as name:
        yield name


def test_sessions_in_any_namespace_are_found_by_id(
    api: client.ApiClient,
    namespace: str,
    other: str,
    database: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    here, there = Objects(api, namespace), Objects(api, other)
    for objects in (here, there):
        objects.create("sessions", "twin", {"user": "alice", "template": "firefox"})
    there.create("sessions", "only-there", {"user": "alice", "template": "firefox"})
    there.create("sessions", "bobs", {"user": "bob", "template": "firefox"})
    facade = start_facade(DATABASE_URL=database, ALL_NAMESPACES="true")
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60)
    alice, bob = Client(facade.url, token("alice")), Client(facade.url, token("bob"))

    def found(path: str) -> Any:
        return alice.get(path).status == 200

    assert wait_until(lambda: found("/api/v1/sessions/only-there"), 10)
    assert alice.get("/api/v1/sessions/only-there").body["namespace"] == other
    # the same id in two namespaces: ask which
    twin = alice.get("/api/v1/sessions/twin")
    assert twin.status == 409 and "?namespace=" in twin.body["error"], twin
    assert alice.get(f"/api/v1/sessions/twin?namespace={other}").body["namespace"] == other
    assert alice.get(f"/api/v1/sessions/twin?namespace={namespace}").body["namespace"] == namespace
    assert alice.get("/api/v1/sessions/twin?namespace=Not_A_Label").status == 404
    # others' sessions stay invisible, wherever they are, and reveal no namespace
    assert alice.get("/api/v1/sessions/bobs").status == 404
    assert bob.get("/api/v1/sessions/twin").status == 404
    assert bob.get("/api/v1/sessions/bobs").body["namespace"] == other

    # every session route works on the session where it is
    base = "/api/v1/sessions/only-there"
    connected = alice.get(base + "/connect")
    assert connected.status == 200, connected
    cid = connected.body["connectionId"]
    assert there.get("connections", cid) is not None, "the Connection is beside its session"
    assert alice.post(f"{base}/heartbeat?connectionId={cid}").status == 200
    listed = alice.get(base + "/connections").body
    assert [c["connectionId"] for c in listed["connections"]] == [cid]
    assert alice.delete(f"{base}/disconnect?connectionId={cid}").status == 200
    assert alice.patch(base, {"state": "hibernated"}).body["state"] == "hibernated"
    assert there.spec("only-there")["state"] == "hibernated"
    assert alice.delete(base).status == 204
    assert wait_until(lambda: there.session("only-there") is None, 10)
