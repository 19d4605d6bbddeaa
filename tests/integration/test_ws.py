"""WebSocket streams of the real facade against a real API server.

Sessions are written the way kubectl and GitOps tools write them (straight to the API server),
so every message here was caused by a watch event, not by the facade's own REST handlers.
"""

from __future__ import annotations

import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from facade_testing import Client, FacadeThread, WebSocket, token
from streamspace.conditions import timestamp
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

WS = "/api/v1/ws/sessions"


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


@pytest.fixture
def facade(start_facade: Callable[..., FacadeThread]) -> FacadeThread:
    return start_facade(WS_HEARTBEAT="2s")


@pytest.fixture
def connect(facade: FacadeThread) -> Iterator[Callable[..., WebSocket]]:
    opened: list[WebSocket] = []

    def open_(user: str, role: str = "user", path: str = WS, **kw: Any) -> WebSocket:
        ws = WebSocket(facade.url + path, token=token(user, role), **kw).open()
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


def ids(data: Any) -> set[str]:
    return {s["id"] for s in data["sessions"]}


def update_with(name: str, check: Callable[[dict[str, Any]], bool] = lambda _: True) -> Any:
    def match(data: Any) -> bool:
        if not isinstance(data, dict) or data.get("type") != "sessions_update":
            return False
        return any(s["id"] == name and check(s) for s in data["sessions"])

    return match


def session_spec(user: str, **extra: Any) -> dict[str, Any]:
    return {"user": user, "template": "firefox", "state": "running", **extra}


def test_kubectl_change_is_pushed_to_its_owner_and_to_nobody_else(
    connect: Callable[..., WebSocket], objects: Objects
) -> None:
    alice, bob, admin = connect("alice"), connect("bob"), connect("root", "admin")
    for ws in (alice, bob, admin):
        first = ws.next()
        assert first.data["type"] == "sessions_update"
        assert first.data["reason"] == "subscribe"
        assert first.data["count"] == 0 and first.data["sessions"] == []
        assert datetime.fromisoformat(first.data["timestamp"]).tzinfo is not None

    created = time.monotonic()
    objects.create("sessions", "alice-applied", session_spec("alice", tags=["kubectl"]))
    seen = alice.next(update_with("alice-applied"))
    assert seen.data["reason"] == "change", "pushed by the change, not by a periodic snapshot"
    print(f"kubectl create → alice's message: {(seen.at - created) * 1000:.0f} ms")
    view = next(s for s in seen.data["sessions"] if s["id"] == "alice-applied")
    assert view["user"] == "alice" and view["tags"] == ["kubectl"]
    assert view["state"] == "running" and view["status"] == "Pending"
    assert seen.data["count"] == 1
    admin.next(update_with("alice-applied"))

    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-applied", {"spec": {"tags": ["moved"]}}
    )
    changed = alice.next(update_with("alice-applied", lambda s: s["tags"] == ["moved"]))
    assert changed.data["reason"] == "change"
    # bob keeps getting his own (empty) snapshots, and never a word of alice's session
    bob.next(lambda d: d["reason"] == "snapshot" and d["count"] == 0)
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-applied"
    )
    gone = alice.next(lambda d: d["reason"] == "change" and "alice-applied" not in ids(d))
    assert gone.data["count"] == 0
    bob.next(lambda d: d["reason"] == "snapshot")
    assert all("alice-applied" not in str(m.data) for m in bob.drain())


def test_operators_see_every_session_and_users_only_theirs(
    connect: Callable[..., WebSocket], objects: Objects
) -> None:
    objects.create("sessions", "alice-one", session_spec("alice"))
    objects.create("sessions", "bob-one", session_spec("bob"))
    operator = connect("ops", "operator")
    assert wait_until(lambda: ids(operator.next().data) == {"alice-one", "bob-one"}, 10)
    alice = connect("alice")
    assert ids(alice.next().data) == {"alice-one"}
    bob = connect("bob")
    assert ids(bob.next().data) == {"bob-one"}
    objects.create("sessions", "bob-two", session_spec("bob"))
    bob.next(lambda d: ids(d) == {"bob-one", "bob-two"})
    operator.next(lambda d: ids(d) == {"alice-one", "bob-one", "bob-two"})
    alice.next(lambda d: d["reason"] == "snapshot")
    assert all(ids(m.data) == {"alice-one"} for m in alice.drain())


def test_authentication_on_the_upgrade(facade: FacadeThread, objects: Objects) -> None:
    url = facade.url + WS
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        WebSocket(url).open()
    assert refused.value.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        WebSocket(url + "?token=not-a-token").open()
    assert refused.value.status == 401
    # browsers: the token as a subprotocol next to ours; the answer names ours, not the token
    jwt = token("alice")
    with WebSocket(url, protocols=("streamspace.v1", f"bearer.{jwt}")) as ws:
        assert ws.protocol == "streamspace.v1"
        assert ws.next().data["type"] == "sessions_update"
    with WebSocket(f"{url}?token={jwt}") as ws:
        assert ws.next().data["reason"] == "subscribe"
    # only operators and admins get the cluster stream, refused before the upgrade
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        WebSocket(facade.url + "/api/v1/ws/cluster", token=jwt).open()
    assert refused.value.status == 403
    # a plain GET on a stream is told to upgrade
    reply = Client(facade.url, jwt).get(WS)
    assert reply.status == 426 and reply.body["code"] == "UPGRADE_REQUIRED"


def test_origin_check(start_facade: Callable[..., FacadeThread]) -> None:
    facade = start_facade(CORS_ALLOWED_ORIGINS="https://ui.example.com")
    url, jwt = facade.url + WS, token("alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        WebSocket(url, token=jwt, headers={"Origin": "https://evil.example.net"}).open()
    assert refused.value.status == 403
    with WebSocket(url, token=jwt, headers={"Origin": "https://ui.example.com"}) as ws:
        assert ws.next().data["type"] == "sessions_update"
    own = facade.url.replace("http://", "http://", 1)  # a page served by the facade's own host
    with WebSocket(url, token=jwt, headers={"Origin": own}) as ws:
        assert ws.next().data["type"] == "sessions_update"
    metrics = Client(facade.url).get("/metrics").body
    assert 'streamspace_websocket_dropped_total{reason="origin",stream="sessions"}' in metrics


def test_periodic_snapshots_and_reconnect(
    connect: Callable[..., WebSocket], objects: Objects
) -> None:
    alice = connect("alice")
    alice.next()
    first = alice.next(lambda d: d["reason"] == "snapshot")
    second = alice.next(lambda d: d["reason"] == "snapshot")
    gap = second.at - first.at
    print(f"snapshot interval: {gap:.2f} s")
    assert gap > 1.0, "snapshots are periodic, not back to back"
    alice.close()
    assert alice.close_code == 1000
    # changes while away are in the first message after reconnecting
    objects.create("sessions", "alice-later", session_spec("alice"))
    again = connect("alice")
    first_again = again.next()
    assert first_again.data["reason"] == "subscribe"
    assert ids(first_again.data) == {"alice-later"}


def test_idle_warning_reaches_the_owner_before_hibernation(
    start_facade: Callable[..., FacadeThread], objects: Objects
) -> None:
    facade = start_facade(HIBERNATE_WARNING="60s")
    objects.create("sessions", "alice-idle", session_spec("alice"))
    objects.create("sessions", "bob-busy", session_spec("bob"))
    alice = WebSocket(facade.url + WS, token=token("alice")).open()
    bob = WebSocket(facade.url + WS, token=token("bob")).open()
    try:
        alice.next()
        bob.next()
        deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=62)
        status = {"phase": "Running", "idleDeadline": timestamp(deadline)}
        objects.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, objects.ns, "sessions", "alice-idle", {"status": status}
        )
        warning = alice.next(lambda d: d["type"] == "hibernate_warning", timeout=15)
        assert warning.data["sessionId"] == "alice-idle"
        assert warning.data["idleDeadline"] == timestamp(deadline)
        assert 0 < warning.data["secondsRemaining"] <= 60
        # once per deadline: the next snapshots come without a second warning
        alice.next(lambda d: d["reason"] == "snapshot")
        alice.next(lambda d: d["reason"] == "snapshot")
        warnings = [m for m in alice.drain() if m.data["type"] == "hibernate_warning"]
        assert len(warnings) == 1
        bob.next(lambda d: d["reason"] == "snapshot")
        assert all(m.data["type"] != "hibernate_warning" for m in bob.drain())
        # someone who subscribes inside the warning window is warned at once
        late = WebSocket(facade.url + WS, token=token("root", "admin")).open()
        try:
            late.next(lambda d: d["type"] == "hibernate_warning" and d["user"] == "alice")
        finally:
            late.close()
    finally:
        alice.close()
        bob.close()


def test_cluster_metrics_stream(connect: Callable[..., WebSocket], objects: Objects) -> None:
    objects.create("sessions", "alice-one", session_spec("alice"))
    objects.create("sessions", "bob-one", session_spec("bob"))
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, objects.ns, "sessions", "bob-one", {"status": {"phase": "Running"}}
    )
    operator = connect("ops", "operator", path="/api/v1/ws/cluster")
    # the stream's watch may deliver the creates before the status patch: wait for both
    first = operator.next(
        lambda d: (
            d["metrics"]["sessions"]["total"] == 2 and d["metrics"]["sessions"]["running"] == 1
        )
    )
    assert first.data["type"] == "metrics_update"
    figures = first.data["metrics"]
    assert {"activeConnections", "repositories", "templates"} <= set(figures)
    # then the periodic ones (the first of them may follow the subscription closely)
    second = operator.next(lambda d: d["type"] == "metrics_update", timeout=15)
    third = operator.next(lambda d: d["type"] == "metrics_update", timeout=15)
    print(f"metrics_update interval: {third.at - second.at:.2f} s")
    assert third.at - second.at > 2.0, "every 5 s, not back to back"


def test_ping_pong(facade: FacadeThread) -> None:
    """A client that answers pings stays; one that does not is closed after the heartbeat."""
    url = facade.url + WS
    quiet = WebSocket(url, token=token("alice"), autoping=False).open()
    polite = WebSocket(url, token=token("alice")).open()
    try:
        assert quiet.closed.wait(20), "a client that never answers pings is closed"
        assert not polite.closed.is_set()
        polite.next(lambda d: d["reason"] == "snapshot")
    finally:
        quiet.close()
        polite.close()


def test_slow_client_is_dropped_without_slowing_the_others(
    start_facade: Callable[..., FacadeThread], objects: Objects
) -> None:
    facade = start_facade(WS_QUEUE="4")
    # big messages (~100 kB): 40 sessions with 32 long tags each. The stalled client's kernel
    # buffers (up to a few MB on loopback) fill first, then its queue of 4 messages.
    tags = [f"{i:02d}-" + "x" * 60 for i in range(32)]
    for n in range(40):
        objects.create("sessions", f"alice-{n}", session_spec("alice", tags=tags))
    jwt = token("alice")
    before = _drops(facade)
    slow = _stalled_client(facade.url, WS, jwt)
    fast = WebSocket(facade.url + WS, token=jwt).open()
    try:
        fast.next(lambda d: d["count"] == 40)
        for round_ in range(200):
            marker = f"{round_:02d}-" + "y" * 60
            objects.custom.patch_namespaced_custom_object(
                GROUP, VERSION, objects.ns, "sessions", "alice-0", {"spec": {"tags": [marker]}}
            )
            fast.next(update_with("alice-0", lambda s, m=marker: s["tags"] == [m]))
            if _drops(facade) > before:
                break
        assert _drops(facade) == before + 1, "the stalled client was dropped, and only it"
        assert not fast.closed.is_set()
        # and the stalled one's connection is gone
        slow.settimeout(10)
        assert wait_until(lambda: _peer_closed(slow), 15)
    finally:
        fast.close()
        slow.close()


def _drops(facade: FacadeThread) -> float:
    """Slow clients dropped so far (the metrics are per process: all facades of this run)."""
    text = Client(facade.url).get("/metrics").body
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "streamspace_websocket_dropped_total" and sample.labels == {
                "reason": "slow",
                "stream": "sessions",
            }:
                return sample.value
    return 0.0


def _stalled_client(base: str, path: str, jwt: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that never reads after the handshake."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {jwt}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _peer_closed(sock: socket.socket) -> bool:
    """Read everything queued; True once the server has closed or reset the connection."""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_shutdown_closes_with_going_away(start_facade: Callable[..., FacadeThread]) -> None:
    facade = start_facade()
    ws = WebSocket(facade.url + WS, token=token("alice")).open()
    ws.next()
    facade.stop()
    assert ws.closed.wait(10)
    assert ws.close_code == 1001
    assert ws.close_reason == "server shutting down"


def test_every_replica_streams_every_change(
    start_facade: Callable[..., FacadeThread], objects: Objects
) -> None:
    one, two = start_facade(), start_facade()
    on_one = WebSocket(one.url + WS, token=token("alice")).open()
    on_two = WebSocket(two.url + WS, token=token("alice")).open()
    try:
        on_one.next()
        on_two.next()
        objects.create("sessions", "alice-shared", session_spec("alice"))
        for ws in (on_one, on_two):
            assert ws.next(update_with("alice-shared")).data["reason"] == "change"
    finally:
        on_one.close()
        on_two.close()


def test_watch_command_prints_the_stream(facade: FacadeThread, objects: Objects) -> None:
    """``streamspace watch sessions --summary``: a line on connecting and one per change."""
    command = [
        sys.executable, "-m", "streamspace.cli", "watch", "sessions", "--summary",
        "--url", facade.url,
    ]  # fmt: skip
    env = {**os.environ, "STREAMSPACE_TOKEN": token("alice")}
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) as watcher:
        assert watcher.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in watcher.stdout or ()])
        reader.start()
        try:
            assert " subscribe: 0 []" in lines.get(timeout=30)
            objects.create("sessions", "alice-watched", session_spec("alice"))
            deadline = time.monotonic() + 30
            while "change: 1 [alice-watched=Pending]" not in lines.get(timeout=30):
                assert time.monotonic() < deadline
        finally:
            watcher.terminate()
            reader.join(10)
