"""A browser signs in with a credential and is then carried by an HttpOnly cookie (issue 18).

Every test goes through the real facade (with PostgreSQL, for API keys) on the real API server;
the attacks are performed as a hostile page would: a cookie-carrying write without the
console's header (a cross-site form), a WebSocket opened from another origin, a key revoked
while a browser is signed in with it, and a sign-in forced on a victim's browser.
"""

from __future__ import annotations

import asyncio
import json
from http.cookies import SimpleCookie
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from facade_testing import Client, Response, token
from streamspace_dev.process import wait_until
from streamspace_facade.signin import COOKIE, CSRF_HEADER, CSRF_VALUE, PATH
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.integration

CONSOLE = {CSRF_HEADER: CSRF_VALUE}


def sign_in(url: str, credential: str, headers: dict[str, str] | None = None) -> Response:
    return Client(url).post(
        PATH, {"token": credential}, headers=CONSOLE if headers is None else headers
    )


def cookie_of(reply: Response) -> Any:
    jar: SimpleCookie = SimpleCookie()
    jar.load(reply.headers.get("Set-Cookie", ""))
    return jar.get(COOKIE)


def browser(url: str, credential: str) -> Client:
    """A client that sends what a signed-in browser sends: the cookie, no Authorization."""
    client = Client(url)
    original = client.request

    def request(method: str, path: str, body: Any = None, **kw: Any) -> Response:
        headers = {"Cookie": f"{COOKIE}={credential}", **(kw.pop("headers", None) or {})}
        return original(method, path, body, headers=headers, **kw)

    client.request = request  # type: ignore[method-assign]
    return client


def test_a_token_becomes_an_httponly_strict_cookie_that_authenticates(
    stack: Any, api: client.ApiClient
) -> None:
    Objects(api, stack.namespace).create("templates", "firefox", TEMPLATE)
    credential = token("alice")
    reply = sign_in(stack.url, credential)
    assert reply.status == 200, reply
    assert reply.body == {"user": "alice", "role": "user", "via": "jwt", "groups": []}
    cookie = cookie_of(reply)
    assert cookie is not None and cookie.value == credential
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP here; Secure when the request came over TLS
    alice = browser(stack.url, credential)
    assert alice.get("/api/v1/me").body["user"] == "alice"
    created = alice.post("/api/v1/sessions", {"template": "firefox"}, headers=CONSOLE)
    assert created.status == 201, created
    assert created.body["user"] == "alice"
    signed_out = Client(stack.url).delete(PATH)
    assert signed_out.status == 204
    cleared = cookie_of(signed_out)
    assert cleared is not None and cleared.value == "" and cleared["max-age"] == "0"


def test_attack_a_cross_site_write_riding_the_cookie_is_refused(stack: Any) -> None:
    """A form on another site can make the browser POST with its cookies, but not add a header."""
    alice = browser(stack.url, token("alice"))
    forged = alice.post("/api/v1/sessions", {"template": "firefox"})
    assert forged.status == 403, forged
    assert CSRF_HEADER in forged.body["error"]
    for method in ("PATCH", "DELETE"):
        assert alice.request(method, "/api/v1/sessions/any").status == 403
    listed = alice.get("/api/v1/sessions")  # reading is no forgery
    assert listed.status == 200
    assert [s["name"] for s in listed.body["sessions"]] == []


def test_attack_a_forced_sign_in_and_a_bad_credential_set_no_cookie(stack: Any) -> None:
    forced = sign_in(stack.url, token("mallory"), headers={})
    assert forced.status == 403 and cookie_of(forced) is None
    refused = sign_in(stack.url, "sk_not-a-key")
    assert refused.status == 401 and cookie_of(refused) is None
    assert "sk_not-a-key" not in json.dumps(refused.body)
    for bad in ({"token": ""}, {"token": 7}, {"token": "a b"}, {"token": "x", "extra": 1}):
        reply = Client(stack.url).post(PATH, bad, headers=CONSOLE)
        assert reply.status == 422 and cookie_of(reply) is None, (bad, reply)
    assert Client(stack.url).get("/api/v1/me").status == 401


def test_attack_a_revoked_key_ends_the_browser_session(stack: Any) -> None:
    admin = stack.client("root", "admin")
    made = admin.post("/api/v1/admin/apikeys", {"user": "alice", "role": "user"})
    assert made.status == 201, made
    key = made.body["key"]
    assert sign_in(stack.url, key).status == 200
    alice = browser(stack.url, key)
    assert alice.get("/api/v1/me").body.items() >= {"user": "alice", "via": "apikey"}.items()
    keys = admin.get("/api/v1/admin/apikeys?user=alice").body["apiKeys"]
    assert admin.delete(f"/api/v1/admin/apikeys/{keys[0]['id']}").status == 204
    assert wait_until(lambda: alice.get("/api/v1/me").status == 401, 10)


async def open_stream(url: str, credential: str, origin: str) -> tuple[int, Any]:
    """(HTTP status of the upgrade, the first message or None)."""
    headers = {"Cookie": f"{COOKIE}={credential}", "Origin": origin}
    async with aiohttp.ClientSession() as http:
        try:
            async with http.ws_connect(
                f"{url}/api/v1/ws/sessions", headers=headers, protocols=("streamspace.v1",)
            ) as ws:
                first = await ws.receive_json(timeout=20)
                return 101, first
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status, None


def test_the_sessions_stream_takes_the_cookie_from_its_own_origin_only(stack: Any) -> None:
    credential = token("alice")
    status, first = asyncio.run(open_stream(stack.url, credential, stack.url))
    assert status == 101 and first["type"] == "sessions_update", first
    status, _ = asyncio.run(open_stream(stack.url, credential, "https://evil.example"))
    assert status == 403
