"""SessionQuota on the REST paths, against the real API server and PostgreSQL: a race of creates,
wakes and connects to hibernated sessions over the running quota, group and default quotas, and
the caller's quota view (issue 19, item 2)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from aiohttp.test_utils import make_mocked_request
from kubernetes import client

from facade_testing import Client, FacadeThread, Response, token
from streamspace_dev.process import wait_until
from streamspace_facade.principal import Principal
from streamspace_facade.quotas import quota_view
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/sessions"
FIREFOX = {"template": "firefox"}


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


@pytest.fixture
def facade(database: str, start_facade: Callable[..., FacadeThread]) -> FacadeThread:
    started = start_facade(DATABASE_URL=database)
    assert started.app is not None
    assert wait_until(started.app[SERVICES].mirror.ready.is_set, 60), "mirror not ready"
    return started


def sessions_of(objects: Objects, user: str) -> list[dict[str, Any]]:
    found: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions"
    )
    return [s for s in found["items"] if s["spec"]["user"] == user]


def assert_quota(reply: Response, quota: str, resource: str, used: Any, allowed: Any) -> None:
    assert reply.status == 403, reply
    assert reply.body["code"] == "QUOTA_EXCEEDED", reply
    assert reply.body["details"] == {
        "quota": quota,
        "resource": resource,
        "used": used,
        "allowed": allowed,
    }, reply
    assert quota in reply.body["error"] and resource in reply.body["error"], reply


def test_ten_concurrent_creates_against_three_give_three(
    objects: Objects, facade: FacadeThread
) -> None:
    objects.create("sessionquotas", "alice", {"users": ["alice"], "limits": {"sessions": 3}})
    alice = Client(facade.url, token("alice"))
    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: alice.post(SESSIONS, FIREFOX), range(10)))
    assert sorted(r.status for r in replies) == [201] * 3 + [403] * 7, replies
    for reply in replies:
        if reply.status == 403:
            assert_quota(reply, "alice", "sessions", 4, 3)
    assert len(sessions_of(objects, "alice")) == 3
    # a user the quota does not select is not held back by alice's use
    assert Client(facade.url, token("bob")).post(SESSIONS, FIREFOX).status == 201
    # room frees up as soon as one of alice's sessions is gone
    first = next(r.body["id"] for r in replies if r.status == 201)
    assert alice.delete(f"{SESSIONS}/{first}").status == 204
    assert alice.post(SESSIONS, FIREFOX).status == 201
    assert_quota(alice.post(SESSIONS, FIREFOX), "alice", "sessions", 4, 3)


def test_wake_and_connect_over_the_running_quota_are_refused(
    objects: Objects, facade: FacadeThread
) -> None:
    objects.create("sessionquotas", "two", {"default": True, "limits": {"runningSessions": 1}})
    objects.create("sessions", "alice-a", {"user": "alice", "template": "firefox"})
    objects.create(
        "sessions", "alice-b", {"user": "alice", "template": "firefox", "state": "hibernated"}
    )
    alice = Client(facade.url, token("alice"))
    assert wait_until(lambda: alice.get(f"{SESSIONS}/alice-b").status == 200, 10)

    assert_quota(
        alice.patch(f"{SESSIONS}/alice-b", {"state": "running"}), "two", "runningSessions", 2, 1
    )
    assert_quota(alice.get(f"{SESSIONS}/alice-b/connect"), "two", "runningSessions", 2, 1)
    assert objects.spec("alice-b")["state"] == "hibernated"  # nothing was written
    connections: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "connections"
    )
    assert connections["items"] == []
    # a new running session is refused the same way; a hibernated one only counts as a session
    assert_quota(alice.post(SESSIONS, FIREFOX), "two", "runningSessions", 2, 1)
    assert alice.post(SESSIONS, {**FIREFOX, "state": "hibernated"}).status == 201

    # hibernating the running one makes room: the wake goes through
    assert alice.patch(f"{SESSIONS}/alice-a", {"state": "hibernated"}).status == 200
    woken = alice.patch(f"{SESSIONS}/alice-b", {"state": "running"})
    assert woken.status == 200 and woken.body["state"] == "running", woken
    assert alice.get(f"{SESSIONS}/alice-a/connect").status == 403
    # raising the quota lets the connect wake it
    objects.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        objects.ns,
        "sessionquotas",
        "two",
        {"spec": {"limits": {"runningSessions": 2}}},
    )
    assert alice.get(f"{SESSIONS}/alice-a/connect").status == 200


def test_user_group_and_default_quotas_select_by_specificity(
    objects: Objects, facade: FacadeThread, database: str
) -> None:
    with psycopg.connect(database, autocommit=True) as conn:
        for user, groups in (("alice", ["staff"]), ("dave", ["staff"]), ("erin", ["guests"])):
            conn.execute("INSERT INTO users (id, groups) VALUES (%s, %s)", (user, groups))
    limits = {"sessions": 1, "cpu": "1"}
    objects.create("sessionquotas", "everyone", {"default": True, "limits": limits})
    objects.create("sessionquotas", "staff", {"groups": ["staff"], "limits": {"sessions": 2}})
    objects.create("sessionquotas", "alice", {"users": ["alice"], "limits": {"sessions": 3}})
    expected = {"alice": ("alice", 3), "dave": ("staff", 2), "erin": ("everyone", 1)}
    for user, (quota, allowed) in expected.items():
        caller = Client(facade.url, token(user))
        for _ in range(allowed):
            assert caller.post(SESSIONS, FIREFOX).status == 201
        assert_quota(caller.post(SESSIONS, FIREFOX), quota, "sessions", allowed + 1, allowed)
    # an admin creating for dave: dave's quota, by dave's groups (read from his users row)
    admin = Client(facade.url, token("root", "admin"))
    assert_quota(admin.post(SESSIONS, {**FIREFOX, "user": "dave"}), "staff", "sessions", 3, 2)
    # the default quota's cpu: the Template's default resources count (1000m each)
    frank = Client(facade.url, token("frank"))
    assert_quota(
        frank.post(SESSIONS, {**FIREFOX, "resources": {"cpu": "1500m"}}),
        "everyone",
        "cpu",
        "1500m",
        "1",
    )

    # what GET /api/v1/me shows
    assert facade.app is not None
    request = make_mocked_request("GET", "/api/v1/me", app=facade.app)
    view = facade.call(quota_view(request, Principal("erin", "user")))
    assert Client(facade.url, token("erin")).get("/api/v1/me").body["quota"] == view
    assert view == {
        "quota": "everyone",
        "namespace": objects.ns,
        "limits": {"sessions": 1, "cpu": "1"},
        "used": {
            "sessions": 1,
            "runningSessions": 1,
            "cpu": "1",
            "memory": "2Gi",
            "gpus": 0,
            "storage": "10Gi",
        },
    }, view
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessionquotas", "everyone"
    )
    assert facade.call(quota_view(request, Principal("frank", "user"))) is None
    assert frank.get("/api/v1/me").body["quota"] is None
    assert frank.post(SESSIONS, FIREFOX).status == 201  # no quota selects frank any more


def test_the_document_lists_the_quota_refusals(facade: FacadeThread) -> None:
    doc = Client(facade.url).get("/api/v1/openapi.json").body
    for path, method in (
        (SESSIONS, "post"),
        (f"{SESSIONS}/{{id}}", "patch"),
        (f"{SESSIONS}/{{id}}/connect", "get"),
    ):
        operation = doc["paths"][path][method]
        assert "QUOTA_EXCEEDED" in operation["summary"], operation
        assert operation["responses"]["403"] == {"$ref": "#/components/responses/Forbidden"}
    forbidden = doc["components"]["responses"]["Forbidden"]["description"]
    assert "QUOTA_EXCEEDED" in forbidden and "details: quota, resource, used, allowed" in forbidden
