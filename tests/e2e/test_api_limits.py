"""Attacks on the admin-set limits over the real facade and API server (issue 13, item 9).

A user asked for eight GPUs, 256 CPUs, 4Ti of memory and 2562047h durations and got 201; a burst
of creates and connects went through unchecked. Each attack is replayed here and must now be
refused with the limit named, without a Session or Connection being written.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from kubernetes import client

from facade_testing import Client, FacadeThread, Response, token
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

SESSIONS = "/api/v1/sessions"

GPU = {"template": "firefox", "resources": {"limits": {"nvidia.com/gpu": 8}}}
CPU = {"template": "firefox", "resources": {"cpu": "256"}}
MEMORY = {"template": "firefox", "resources": {"requests": {"memory": "4Ti"}}}
IDLE = {"template": "firefox", "idleTimeout": "2562047h"}
DURATION = {"template": "firefox", "maxSessionDuration": "2562047h"}


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def session_names(objects: Objects) -> set[str]:
    found: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions"
    )
    return {item["metadata"]["name"] for item in found["items"]}


def connection_count(objects: Objects) -> int:
    found: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "connections"
    )
    return len(found["items"])


def facade_with(start_facade: Callable[..., FacadeThread], database: str, **env: str) -> str:
    facade = start_facade(DATABASE_URL=database, **env)
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60), "mirror not ready"
    return facade.url


def assert_limited(reply: Response, limit: str, requested: str, allowed: str) -> None:
    """403 in the API's error shape, naming the limit, what was asked and what is allowed."""
    assert reply.status == 403, reply
    assert set(reply.body) == {"error", "code", "details"}, reply
    assert reply.body["code"] == "LIMIT_EXCEEDED", reply
    details = reply.body["details"]
    assert (details["limit"], details["requested"], details["allowed"]) == (
        limit,
        requested,
        allowed,
    ), reply
    assert limit in reply.body["error"], reply


def test_unbounded_requests_are_refused_by_the_default_caps(
    database: str, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    url = facade_with(start_facade, database)
    alice, admin = Client(url, token("alice")), Client(url, token("root", "admin"))
    everything = "[cpu, memory, ephemeral-storage]"
    for caller in (alice, admin):  # the caps are the admin's settings, not a role's privilege
        assert_limited(caller.post(SESSIONS, GPU), "ALLOWED_EXTENDED_RESOURCES", "8", everything)
        assert_limited(caller.post(SESSIONS, CPU), "MAX_SESSION_CPU", "256", "8")
        assert_limited(caller.post(SESSIONS, MEMORY), "MAX_SESSION_MEMORY", "4Ti", "32Gi")
        assert_limited(caller.post(SESSIONS, IDLE), "MAX_IDLE_TIMEOUT", "2562047h", "24h")
        assert_limited(caller.post(SESSIONS, DURATION), "MAX_SESSION_DURATION", "2562047h", "168h")
    assert session_names(objects) == set()

    # every cap broken at once is reported at once
    both = alice.post(SESSIONS, {**CPU, **IDLE})
    assert both.status == 403, both
    assert [v["limit"] for v in both.body["details"]["violations"]] == [
        "MAX_SESSION_CPU",
        "MAX_SESSION_CPU",
        "MAX_IDLE_TIMEOUT",
    ], both

    # within the caps is fine, and an update cannot go around them
    fine = alice.post(
        SESSIONS,
        {
            "template": "firefox",
            "resources": {"requests": {"cpu": "8", "memory": "32Gi"}},
            "idleTimeout": "24h",
            "maxSessionDuration": "168h",
        },
    )
    assert fine.status == 201, fine
    sid = fine.body["id"]
    before = objects.spec(sid)
    path = f"{SESSIONS}/{sid}"
    for body, limit in [
        ({"resources": {"limits": {"nvidia.com/gpu": "8"}}}, "ALLOWED_EXTENDED_RESOURCES"),
        ({"resources": {"limits": {"cpu": "256"}}}, "MAX_SESSION_CPU"),
        ({"resources": {"limits": {"memory": "4Ti"}}}, "MAX_SESSION_MEMORY"),
        ({"idleTimeout": "2562047h"}, "MAX_IDLE_TIMEOUT"),
        ({"maxSessionDuration": "2562047h"}, "MAX_SESSION_DURATION"),
    ]:
        reply = alice.patch(path, body)
        assert reply.status == 403 and reply.body["details"]["limit"] == limit, reply
    assert objects.spec(sid) == before
    assert session_names(objects) == {sid}

    # not a quantity at all: a field error, as before
    bad = alice.post(SESSIONS, {"template": "firefox", "resources": {"memory": "lots"}})
    assert bad.status == 422 and "resources.requests.memory" in bad.body["details"]["fields"], bad


def test_an_admins_caps_are_honoured(
    database: str, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    url = facade_with(
        start_facade,
        database,
        MAX_SESSION_CPU="16",
        MAX_SESSION_MEMORY="64Gi",
        ALLOWED_EXTENDED_RESOURCES="nvidia.com/gpu=2",
        MAX_IDLE_TIMEOUT="1h",
        MAX_SESSION_DURATION="2h",
    )
    alice = Client(url, token("alice"))
    allowed = alice.post(
        SESSIONS,
        {
            "template": "firefox",
            "resources": {
                "requests": {"cpu": "16", "memory": "64Gi"},
                "limits": {"nvidia.com/gpu": 2},
            },
            "idleTimeout": "60m",
            "maxSessionDuration": "90m",
        },
    )
    assert allowed.status == 201, allowed
    spec = objects.spec(allowed.body["id"])
    assert spec["resources"] == {
        "requests": {"cpu": "16", "memory": "64Gi"},
        "limits": {"nvidia.com/gpu": "2"},
    }
    assert (spec["idleTimeout"], spec["maxSessionDuration"]) == ("60m", "90m")

    three = {"template": "firefox", "resources": {"limits": {"nvidia.com/gpu": 3}}}
    assert_limited(alice.post(SESSIONS, three), "ALLOWED_EXTENDED_RESOURCES", "3", "2")
    fpga = {"template": "firefox", "resources": {"limits": {"example.com/fpga": 1}}}
    assert_limited(
        alice.post(SESSIONS, fpga),
        "ALLOWED_EXTENDED_RESOURCES",
        "1",
        "[cpu, memory, ephemeral-storage, nvidia.com/gpu]",
    )
    cpu = {"template": "firefox", "resources": {"limits": {"cpu": "16001m"}}}
    assert_limited(alice.post(SESSIONS, cpu), "MAX_SESSION_CPU", "16001m", "16")
    idle = {"template": "firefox", "idleTimeout": "61m"}
    assert_limited(alice.post(SESSIONS, idle), "MAX_IDLE_TIMEOUT", "61m", "1h")
    longer = {"template": "firefox", "maxSessionDuration": "3h"}
    assert_limited(alice.post(SESSIONS, longer), "MAX_SESSION_DURATION", "3h", "2h")
    assert session_names(objects) == {allowed.body["id"]}


def assert_rate_limited(reply: Response, limit: str, allowed: str) -> None:
    """429 with Retry-After in whole seconds and a JSON error naming the limit."""
    assert reply.status == 429, reply
    assert set(reply.body) == {"error", "code", "details"}, reply
    assert reply.body["code"] == "RATE_LIMITED", reply
    assert reply.body["details"]["limit"] == limit, reply
    assert reply.body["details"]["allowed"] == allowed, reply
    seconds = int(reply.headers["Retry-After"])
    assert seconds == reply.body["details"]["retryAfter"], reply
    assert 1 <= seconds <= 3600, reply


def test_a_burst_of_creates_is_cut_at_the_rate_limit(
    database: str, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    # 3 per hour: the bucket does not refill while the burst runs, however slow the machine
    url = facade_with(start_facade, database, RATE_LIMIT_CREATE="3/h")
    alice, bob = Client(url, token("alice")), Client(url, token("bob"))

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: alice.post(SESSIONS, {"template": "firefox"}), range(8)))
    assert sorted(r.status for r in replies) == [201] * 3 + [429] * 5, replies
    for reply in replies:
        if reply.status == 429:
            assert_rate_limited(reply, "RATE_LIMIT_CREATE", "3/1h")
    created = {r.body["id"] for r in replies if r.status == 201}
    assert session_names(objects) == created

    # refused requests cost nothing more: still refused, still nothing written
    assert_rate_limited(alice.post(SESSIONS, {"template": "firefox"}), "RATE_LIMIT_CREATE", "3/1h")
    # the limit is per user: bob has a bucket of his own
    assert bob.post(SESSIONS, {"template": "firefox"}).status == 201
    assert len(session_names(objects)) == 4


def test_a_burst_of_connects_is_cut_at_the_rate_limit(
    database: str, objects: Objects, start_facade: Callable[..., FacadeThread]
) -> None:
    url = facade_with(start_facade, database, RATE_LIMIT_CONNECT="4/h")
    alice, bob = Client(url, token("alice")), Client(url, token("bob"))
    sid = alice.post(SESSIONS, {"template": "firefox"}).body["id"]

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(lambda _: alice.get(f"{SESSIONS}/{sid}/connect"), range(10)))
    assert sorted(r.status for r in replies) == [200] * 4 + [429] * 6, replies
    for reply in replies:
        if reply.status == 429:
            assert_rate_limited(reply, "RATE_LIMIT_CONNECT", "4/1h")
    assert connection_count(objects) == 4

    other = bob.post(SESSIONS, {"template": "firefox"}).body["id"]
    assert bob.get(f"{SESSIONS}/{other}/connect").status == 200
    assert connection_count(objects) == 5
