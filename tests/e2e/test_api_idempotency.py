"""``Idempotency-Key`` on POSTs, over the real facade, API server and PostgreSQL (issue 13, 19).

Same key and same caller: the same answer, and one Session. Same key, different request: 422.
Same key while the first request is being served: the same answer or 409, never a second
Session. (The PostgreSQL outage case is in ``test_api_resilience.py``.)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import Client, Response
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = pytest.mark.e2e

SESSIONS = "/api/v1/sessions"
FIREFOX = {"template": "firefox"}


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    objects.create("templates", "vlc", TEMPLATE)
    return objects


def session_names(objects: Objects) -> set[str]:
    found: Any = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions"
    )
    return {item["metadata"]["name"] for item in found["items"]}


def post(caller: Client, key: str, body: dict[str, Any] = FIREFOX) -> Response:
    return caller.post(SESSIONS, body, headers={"Idempotency-Key": key})


def assert_key_reused(reply: Response) -> None:
    assert reply.status == 422, reply
    assert reply.body["code"] == "VALIDATION_FAILED", reply
    assert "header.Idempotency-Key" in reply.body["details"]["fields"], reply


def test_a_retried_create_answers_the_same_session(stack: Any, objects: Objects) -> None:
    alice, bob = stack.client("alice"), stack.client("bob")
    first = post(alice, "order-1")
    assert first.status == 201, first
    again = post(alice, '"order-1"')  # the draft's structured-field form: the same key
    assert again.status == 201, again
    assert again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert session_names(objects) == {first.body["id"]}

    # the same key with a different request is refused, and changes nothing
    assert_key_reused(post(alice, "order-1", {"template": "vlc"}))
    assert_key_reused(post(alice, "order-1", {"template": "firefox", "tags": ["x"]}))
    # keys belong to their caller: bob's "order-1" is his own
    bobs = post(bob, "order-1")
    assert bobs.status == 201 and bobs.body["id"] != first.body["id"], bobs
    # a new key is a new request
    other = post(alice, "order-2")
    assert other.status == 201 and other.body["id"] != first.body["id"], other
    assert session_names(objects) == {first.body["id"], bobs.body["id"], other.body["id"]}

    # what is stored is a hash of (caller, key), never the key
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT key_hash, user_id, status FROM idempotency_keys").fetchall()
    assert sorted((r[1], r[2]) for r in rows) == [("alice", 201), ("alice", 201), ("bob", 201)]
    assert not any("order" in r[0] for r in rows)


def test_a_failed_request_does_not_hold_its_key(stack: Any, objects: Objects) -> None:
    alice = stack.client("alice")
    missing = post(alice, "k", {"template": "nosuch"})
    assert missing.status == 422, missing
    with psycopg.connect(stack.database_url) as conn:
        stored = conn.execute("SELECT count(*) FROM idempotency_keys").fetchone()
    assert stored == (0,)  # a refused request changed nothing: its claim is released
    # so the corrected request may be sent with the same key, and is served
    fixed = post(alice, "k", FIREFOX)
    assert fixed.status == 201, fixed
    assert session_names(objects) == {fixed.body["id"]}


def test_concurrent_retries_make_one_session(stack: Any, objects: Objects) -> None:
    alice = stack.client("alice")
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: post(alice, "burst"), range(8)))
    assert {r.status for r in replies} <= {201, 409}, replies
    created = [r for r in replies if r.status == 201]
    assert created, replies
    assert len({r.body["id"] for r in created}) == 1, replies
    for reply in replies:
        if reply.status == 409:
            assert reply.body["code"] == "CONFLICT", reply
    assert session_names(objects) == {created[0].body["id"]}
    assert post(alice, "burst").body == created[0].body


@pytest.mark.parametrize("key", ["", "a b", "x" * 256])
def test_unusable_keys_are_refused(stack: Any, objects: Objects, key: str) -> None:
    reply = post(stack.client("alice"), key)
    assert reply.status == 422, reply
    assert "header.Idempotency-Key" in reply.body["details"]["fields"], reply
    assert session_names(objects) == set()
