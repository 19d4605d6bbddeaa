"""Attacks on the WebSocket streams (issue 13, items 8, 12 and 14), against the real facade.

* One user opening stream after stream gets 429 (naming the limit) before the upgrade, while
  other users still get streams and REST still answers.
* A stream outlives neither its API key (revoked while subscribed) nor its JWT (expiring while
  subscribed): it is closed with 4401 and says why.
* Pod logs are for session pods only: a pod of the namespace that is not a session's is "not
  found" for operators and admins too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import psycopg
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import JWT_SECRET, Client, FacadeThread, Response, WebSocket, token
from streamspace.auth import apikeys
from streamspace.auth.tokens import mint_hs256
from streamspace.db.migrate import migrate
from streamspace.manifests import MANAGED_BY, SESSION_LABEL, USER_LABEL
from streamspace_dev.process import wait_until

pytestmark = pytest.mark.integration

WS = "/api/v1/ws/sessions"
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def upgrade(facade: FacadeThread, path: str, credential: str) -> Response:
    """A WebSocket handshake as plain HTTP: a refusal comes back with its JSON body."""
    return Client(facade.url, credential).get(path, headers=UPGRADE)


@pytest.fixture
def streams() -> Iterator[Callable[..., WebSocket]]:
    opened: list[WebSocket] = []

    def open_(url: str, credential: str) -> WebSocket:
        ws = WebSocket(url, token=credential).open()
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


# --- item 8: stream caps ------------------------------------------------------------------------


def test_attack_one_user_cannot_hold_every_stream(
    start_facade: Callable[..., FacadeThread], streams: Callable[..., WebSocket]
) -> None:
    facade = start_facade(WS_MAX_STREAMS_PER_USER="3", WS_MAX_STREAMS="5")
    url, bob = facade.url + WS, token("bob")
    held = [streams(url, bob) for _ in range(3)]
    for ws in held:
        ws.next()

    refused = upgrade(facade, WS, bob)
    assert refused.status == 429, refused
    assert refused.body["code"] == "TOO_MANY_STREAMS"
    assert refused.body["details"] == {"limit": "WS_MAX_STREAMS_PER_USER", "max": 3}
    assert "WS_MAX_STREAMS_PER_USER" in refused.body["error"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
        WebSocket(url, token=bob).open()
    assert caught.value.status == 429
    # the other streams are per user too: bob's cluster stream is refused, olga's is not
    olga = token("olga", "operator")
    assert upgrade(facade, "/api/v1/ws/cluster", token("bob", "operator")).status == 429

    # everybody else still gets through, and REST answers
    streams(url, token("alice")).next()
    streams(facade.url + "/api/v1/ws/cluster", olga).next()
    assert Client(facade.url, olga).get("/api/v1/templates").status == 200
    assert Client(facade.url, bob).get("/api/v1/me").status == 200

    # the server-wide cap: 5 streams are open now
    total = upgrade(facade, WS, token("carol"))
    assert total.status == 429, total
    assert total.body["details"] == {"limit": "WS_MAX_STREAMS", "max": 5}

    # a closed stream gives its slot back
    held[0].close()
    carol: list[WebSocket] = []

    def carol_gets_one() -> bool:
        try:
            carol.append(streams(url, token("carol")))
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
            return False
        return True

    assert wait_until(carol_gets_one, 10)
    carol[0].next()
    metrics = Client(facade.url).get("/metrics").body
    assert (
        'streamspace_websocket_refused_total{limit="WS_MAX_STREAMS_PER_USER",stream="sessions"}'
        in metrics
    )


# --- item 12: credentials re-checked on open streams ---------------------------------------------


def test_attack_revoked_api_key_closes_its_open_stream(
    start_facade: Callable[..., FacadeThread], database: str, streams: Callable[..., WebSocket]
) -> None:
    migrate(database)
    facade = start_facade(DATABASE_URL=database, WS_REAUTH_INTERVAL="1s")
    with psycopg.connect(database, autocommit=True) as conn:
        key = apikeys.create_api_key(conn, "dora", "user", "laptop")
        kept = apikeys.create_api_key(conn, "dora", "user", "desktop")
    revoked = streams(facade.url + WS, key)
    other = streams(facade.url + WS, kept)
    revoked.next()
    other.next()
    # still open after several re-checks while the key is good
    revoked.next(lambda d: d["reason"] == "snapshot", timeout=10)
    assert not revoked.closed.is_set()

    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute(
            "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s", (apikeys.hash_key(key),)
        )
    assert revoked.closed.wait(15), "the stream outlived its revoked API key"
    assert revoked.close_code == 4401
    assert revoked.close_reason == "credentials no longer valid: API key revoked or unknown"
    # the same user's stream on a key that is still good stays
    other.next(lambda d: d["reason"] == "snapshot", timeout=10)
    assert not other.closed.is_set()
    assert upgrade(facade, WS, key).status == 401


def test_attack_jwt_expiring_mid_stream_closes_it(
    start_facade: Callable[..., FacadeThread], streams: Callable[..., WebSocket]
) -> None:
    facade = start_facade(WS_REAUTH_INTERVAL="1s")
    # valid for about 8 more seconds: expired 22 s ago, inside the 30 s leeway for clock skew
    issued = datetime.now(UTC) - timedelta(hours=1, seconds=22)
    short = mint_hs256(JWT_SECRET, "alice", "user", timedelta(hours=1), now=issued)
    expiring = streams(facade.url + WS, short)
    lasting = streams(facade.url + WS, token("alice"))
    expiring.next()
    lasting.next()
    assert expiring.closed.wait(30), "the stream outlived its token"
    assert expiring.close_code == 4401
    assert expiring.close_reason == "credentials no longer valid: token expired"
    lasting.next(lambda d: d["reason"] == "snapshot", timeout=10)
    assert not lasting.closed.is_set()


# --- item 14: session pods only -----------------------------------------------------------------


def test_attack_a_user_disabled_mid_stream_is_cut_off(
    start_facade: Callable[..., FacadeThread], database: str, streams: Callable[..., WebSocket]
) -> None:
    migrate(database)
    facade = start_facade(DATABASE_URL=database, WS_REAUTH_INTERVAL="1s")
    alice = streams(facade.url + WS, token("alice"))
    alice.next()
    root = Client(facade.url, token("root", "admin"))
    assert root.patch("/api/v1/users/alice", {"disabled": True}).status == 200
    assert alice.closed.wait(15), "the stream outlived its user"
    assert alice.close_code == 4401
    assert (
        alice.close_reason
        == "credentials no longer valid: this user is disabled; ask an administrator"
    )
    assert upgrade(facade, WS, token("alice")).status == 403


def create_pod(core: client.CoreV1Api, namespace: str, name: str, labels: dict[str, str]) -> Any:
    return core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "app", "image": "example/app"}],
            },
        },
    )


def test_attack_operator_cannot_follow_a_foreign_pod(
    start_facade: Callable[..., FacadeThread], api: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api)
    # the minimal control plane has no controller manager to make the default ServiceAccount
    # (once a full-profile test ran, its controller manager has made it)
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    session = {**MANAGED_BY, SESSION_LABEL: "alice-firefox-1", USER_LABEL: "alice"}
    create_pod(core, namespace, "database-0", {"app": "postgres"})
    create_pod(core, namespace, "managed-only", {**MANAGED_BY, USER_LABEL: "alice"})
    create_pod(core, namespace, "alice-firefox-1-abc", session)
    facade = start_facade()

    def logs(pod: str) -> str:
        return f"/api/v1/ws/logs/{namespace}/{pod}"

    for who in (token("olga", "operator"), token("root", "admin"), token("alice")):
        for foreign in ("database-0", "managed-only"):
            refused = upgrade(facade, logs(foreign), who)
            assert refused.status == 404, (foreign, refused)
            assert refused.body["code"] == "NOT_FOUND"
            assert refused.body == upgrade(facade, logs("no-such-pod"), who).body | {
                "error": f"pod {foreign!r} not found"
            }

    # the session pod may be followed by its owner and operators (what the API server says of
    # a pod that no node runs is beside the point here), and stays hidden from other users
    def found(who: str) -> bool:
        try:
            with WebSocket(facade.url + logs("alice-firefox-1-abc"), token=who):
                return True
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status != 404

    assert found(token("olga", "operator")) and found(token("alice"))
    assert upgrade(facade, logs("alice-firefox-1-abc"), token("bob")).status == 404
