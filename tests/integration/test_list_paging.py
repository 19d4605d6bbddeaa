"""Facade lists against a real API server and PostgreSQL: keyset paging under change, continue
tokens, ETag/304, gzip, and the API key cache's revocation (issue 17)."""

from __future__ import annotations

import gzip
import http.client
import json
import urllib.parse
from collections.abc import Callable
from email.message import Message
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import Client, FacadeThread, token
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import Objects

pytestmark = pytest.mark.integration

SESSIONS = "/api/v1/sessions"


def _session(objects: Objects, name: str, user: str = "alice") -> None:
    objects.create("sessions", name, {"user": user, "template": "firefox", "state": "hibernated"})


def _facade(start_facade: Callable[..., FacadeThread], database: str, **env: str) -> FacadeThread:
    facade = start_facade(DATABASE_URL=database, **env)
    assert facade.app is not None
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60), "mirror not ready"
    return facade


def _listed(caller: Client, path: str) -> list[str]:
    reply = caller.get(path)
    assert reply.status == 200, reply
    return [s["id"] for s in reply.body["sessions"]]


def _raw_get(url: str, path: str, headers: dict[str, str]) -> tuple[int, Message, bytes]:
    """Status, headers (names compared without case) and the body as sent."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
    try:
        connection.request("GET", path, headers=headers)
        reply = connection.getresponse()
        return reply.status, reply.headers, reply.read()
    finally:
        connection.close()


def test_paging_walks_every_session_once_while_sessions_come_and_go(
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    objects = Objects(api, namespace)
    for i in range(23):
        _session(objects, f"s-{i:02d}")
    facade = _facade(start_facade, database)
    alice = Client(facade.url, token("alice"))
    assert wait_until(lambda: alice.get(SESSIONS).body["total"] == 23, 30)

    first = alice.get(SESSIONS + "?limit=5")
    assert first.status == 200, first
    assert first.body["limit"] == 5 and first.body["total"] == 23
    assert len(first.body["sessions"]) == 5 and first.body["continue"]
    stayed = set(_listed(alice, SESSIONS + "?limit=1000"))
    seen = [s["id"] for s in first.body["sessions"]]
    token_ = first.body["continue"]
    removed: set[str] = set()
    pages = 1
    while token_:
        # between pages: one session not yet served goes, one new one comes (newest first, so
        # it belongs before the pages already read: it must not appear, nothing may shift)
        later = sorted(stayed - set(seen) - removed)
        if later:
            gone = later[0]
            objects.custom.delete_namespaced_custom_object(
                "stream.space", "v1alpha1", namespace, "sessions", gone
            )
            removed.add(gone)
        newest = f"new-{pages}"
        _session(objects, newest)

        def mirrored(newest: str = newest) -> bool:
            listed = set(_listed(alice, SESSIONS + "?limit=1000"))
            return not removed & listed and newest in listed

        assert wait_until(mirrored, 30)
        reply = alice.get(SESSIONS + "?limit=5&continue=" + urllib.parse.quote(token_))
        assert reply.status == 200, reply
        seen += [s["id"] for s in reply.body["sessions"]]
        token_ = reply.body["continue"]
        pages += 1
    assert len(seen) == len(set(seen)), "a session was served twice"
    assert set(seen) == stayed - removed, "a session that stayed was skipped"
    assert not any(s.startswith("new-") for s in seen)


def test_continue_tokens_are_bound_signed_and_checked(
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    objects = Objects(api, namespace)
    for i in range(4):
        _session(objects, f"t-{i}", user="bob")
    facade = _facade(start_facade, database)
    bob = Client(facade.url, token("bob"))
    assert wait_until(lambda: bob.get(SESSIONS).body["total"] == 4, 30)
    page = bob.get(SESSIONS + "?limit=2").body
    good = page["continue"]
    body, _, mac = good.partition(".")
    tampered = [
        body[:-2] + ("AA" if body[-2:] != "AA" else "BB") + "." + mac,  # another position
        body + "." + mac[:-1] + ("A" if mac[-1] != "A" else "B"),  # another signature
        "garbage",
        "a.b.c",
        good + "x" * 3000,
    ]
    for bad in tampered:
        reply = bob.get(SESSIONS + "?limit=2&continue=" + urllib.parse.quote(bad))
        assert reply.status == 422, (bad, reply)
        assert "query.continue" in reply.body["details"]["fields"]
    # a token continues only the list and filters it came from, and not with ?page=
    for path in (
        SESSIONS + "?limit=2&state=running&continue=",
        "/api/v1/templates?continue=",
        SESSIONS + "?limit=2&page=2&continue=",
    ):
        reply = bob.get(path + urllib.parse.quote(good))
        assert reply.status == 422, (path, reply)
        assert "query.continue" in reply.body["details"]["fields"]
    # another caller cannot continue bob's list either
    carol = Client(facade.url, token("carol", "admin"))
    assert carol.get(SESSIONS + "?limit=2&continue=" + urllib.parse.quote(good)).status == 422
    for bad_limit in ("0", "1001", "ten"):
        reply = bob.get(SESSIONS + "?limit=" + bad_limit)
        assert reply.status == 422 and "query.limit" in reply.body["details"]["fields"], reply
    # the seed's numbered pages still work
    numbered = bob.get(SESSIONS + "?limit=3&page=2").body
    assert numbered["page"] == 2 and len(numbered["sessions"]) == 1
    assert numbered["continue"] is None
    assert bob.get(SESSIONS + "?limit=2&continue=" + urllib.parse.quote(good)).status == 200


def test_etag_304_and_gzip(
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    objects = Objects(api, namespace)
    for i in range(30):
        _session(objects, f"e-{i:02d}")
    facade = _facade(start_facade, database)
    auth = {"Authorization": f"Bearer {token('alice')}"}
    alice = Client(facade.url, token("alice"))
    assert wait_until(lambda: alice.get(SESSIONS).body["total"] == 30, 30)

    status, headers, _ = _raw_get(facade.url, SESSIONS, auth)
    assert status == 200 and "Content-Encoding" not in headers
    tag = headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"')
    assert "private" in headers["Cache-Control"] and "no-cache" in headers["Cache-Control"]
    status, again, empty = _raw_get(facade.url, SESSIONS, {**auth, "If-None-Match": tag})
    assert status == 304 and empty == b"" and again["ETag"] == tag
    # a change makes another tag
    _session(objects, "e-new")
    assert wait_until(lambda: alice.get(SESSIONS).body["total"] == 31, 30)
    status, _, fresh = _raw_get(facade.url, SESSIONS, {**auth, "If-None-Match": tag})
    assert status == 200 and json.loads(fresh)["total"] == 31

    status, zipped, packed = _raw_get(facade.url, SESSIONS, {**auth, "Accept-Encoding": "gzip"})
    assert status == 200 and zipped["Content-Encoding"] == "gzip"
    assert json.loads(gzip.decompress(packed)) == json.loads(fresh)
    assert len(packed) < len(fresh)
    status, _, _ = _raw_get(
        facade.url,
        SESSIONS,
        {**auth, "Accept-Encoding": "gzip", "If-None-Match": zipped["ETag"]},
    )
    assert status == 304
    # gzip;q=0 refuses it; a get answer carries a tag too
    status, plain, _ = _raw_get(facade.url, SESSIONS, {**auth, "Accept-Encoding": "gzip;q=0"})
    assert status == 200 and "Content-Encoding" not in plain
    status, one, _ = _raw_get(facade.url, SESSIONS + "/e-00", auth)
    assert status == 200 and one["ETag"]
    status, _, _ = _raw_get(facade.url, SESSIONS + "/e-00", {**auth, "If-None-Match": one["ETag"]})
    assert status == 304


def _key(admin: Client, user: str) -> tuple[int, str]:
    made = admin.post("/api/v1/admin/apikeys", {"user": user, "role": "user"})
    assert made.status == 201, made
    listed = admin.get(f"/api/v1/admin/apikeys?user={user}").body["apiKeys"]
    [entry] = [k for k in listed if made.body["key"].startswith(k["prefix"])]
    return int(entry["id"]), str(made.body["key"])


def test_a_key_revoked_here_is_refused_at_once_and_elsewhere_within_the_ttl(
    database: str,
    namespace: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    # a long TTL: only the revocation itself can make this process refuse the key at once
    here = _facade(start_facade, database, API_KEY_CACHE_TTL="1m")
    admin = Client(here.url, token("root", "admin"))
    key_id, key = _key(admin, "dave")
    dave = Client(here.url, key)
    assert dave.get("/api/v1/me").body["user"] == "dave"  # cached now
    assert admin.delete(f"/api/v1/admin/apikeys/{key_id}").status == 204
    refused = dave.get("/api/v1/me")
    assert refused.status == 401, refused

    # a just-created key works at once, even after an unknown key was refused
    assert Client(here.url, "sk_" + "x" * 40).get("/api/v1/me").status == 401
    fresh_id, fresh = _key(admin, "erin")
    assert Client(here.url, fresh).get("/api/v1/me").status == 200

    # revoked elsewhere (the CLI's statement, straight in PostgreSQL): a second facade with a
    # short TTL stops accepting the key once its cache entry expires
    there = start_facade(DATABASE_URL=database, API_KEY_CACHE_TTL="1s")  # not the writer
    erin = Client(there.url, fresh)
    assert erin.get("/api/v1/me").status == 200
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (fresh_id,))
    assert wait_until(lambda: erin.get("/api/v1/me").status == 401, 30, interval=0.2)


def test_every_list_route_answers_the_page_envelope(
    database: str,
    namespace: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    facade = _facade(start_facade, database)
    admin = Client(facade.url, token("root", "admin"))
    for user in ("a", "b", "c"):
        _key(admin, user)
    first = admin.get("/api/v1/admin/apikeys?limit=2").body
    assert len(first["apiKeys"]) == 2 and first["total"] == 3 and first["continue"]
    rest = admin.get(
        "/api/v1/admin/apikeys?limit=2&continue=" + urllib.parse.quote(first["continue"])
    ).body
    assert len(rest["apiKeys"]) == 1 and rest["continue"] is None
    assert {k["id"] for k in first["apiKeys"]}.isdisjoint({k["id"] for k in rest["apiKeys"]})
    for path in (
        "/api/v1/templates",
        "/api/v1/repositories",
        "/api/v1/catalog/repositories",
        "/api/v1/catalog/templates",
        "/api/v1/plugins/catalog",
        "/api/v1/plugins/installed",
        "/api/v1/plugins/repositories",
    ):
        reply = admin.get(path + "?limit=1")
        assert reply.status == 200, (path, reply)
        body: dict[str, Any] = reply.body
        assert body["limit"] == 1 and "continue" in body and "total" in body, (path, body)
        assert admin.get(path + "?limit=0").status == 422, path


def test_the_audit_log_pages_newest_first_filtered_by_user_and_action(
    database: str,
    namespace: str,
    start_facade: Callable[..., FacadeThread],
) -> None:
    facade = _facade(start_facade, database)
    admin = Client(facade.url, token("root", "admin"))
    made = [_key(admin, user)[0] for user in ("a", "b", "c")]
    assert admin.delete(f"/api/v1/admin/apikeys/{made[0]}").status == 204
    audit = "/api/v1/admin/audit"

    def entries(query: str) -> list[dict[str, Any]]:
        reply = admin.get(f"{audit}?{query}")
        assert reply.status == 200, reply
        return list(reply.body["entries"])

    assert wait_until(lambda: len(entries("user=root")) == 4, 30, interval=0.2)
    first = admin.get(f"{audit}?user=root&limit=3").body
    assert first["total"] == 4 and first["continue"], first
    assert [e["action"] for e in first["entries"]] == ["revoke", "create", "create"]
    assert [e["resourceId"] for e in first["entries"][1:]] == ["c", "b"]
    assert first["entries"][0]["user"] == "root" and first["entries"][0]["timestamp"]
    rest = admin.get(
        f"{audit}?user=root&limit=3&continue=" + urllib.parse.quote(first["continue"])
    ).body
    assert [(e["action"], e["resourceId"]) for e in rest["entries"]] == [("create", "a")]
    assert rest["continue"] is None
    assert [e["resourceType"] for e in entries("action=revoke")] == ["api_key"]
    assert entries("user=nobody") == []
    # the token is bound to its filters, the log to admins
    other = admin.get(f"{audit}?action=create&continue=" + urllib.parse.quote(first["continue"]))
    assert other.status == 422, other
    assert Client(facade.url, token("ops", "operator")).get(audit).status == 403
