"""``/api/v1/ws/sessions?format=delta`` of the real facade against a real API server.

Sessions are written straight to the API server (as kubectl would), so every message is caused
by a watch event. Each delta client's messages are replayed by :class:`Replica`, which is what a
client holds: it checks that the sequence numbers are contiguous and that the ``count`` of every
delta matches the sessions it holds after applying it.
"""

from __future__ import annotations

import os
import queue
import socket
import struct
import subprocess
import sys
import threading
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
DELTA = WS + "?format=delta"


class Replica:
    """A delta client's copy of its sessions, keyed by (namespace, id)."""

    def __init__(self) -> None:
        self.sessions: dict[tuple[str, str], dict[str, Any]] = {}
        self.seq: int | None = None
        self.snapshots: list[str] = []  # their reasons
        self.deltas = 0

    def apply(self, data: Any) -> None:
        if data["type"] == "sessions_update":
            self.sessions = {(s["namespace"], s["id"]): s for s in data["sessions"]}
            assert data["count"] == len(self.sessions)
            if self.seq is not None:
                assert data["seq"] >= self.seq, "a snapshot never goes back"
            self.seq = data["seq"]
            self.snapshots.append(data["reason"])
        elif data["type"] == "sessions_delta":
            assert self.seq is not None, "a snapshot comes first"
            assert data["seq"] == self.seq + 1, f"gap: {self.seq} then {data['seq']}"
            self.seq = data["seq"]
            for gone in data["removed"]:
                self.sessions.pop((gone["namespace"], gone["id"]), None)
            for view in data["upserted"]:
                self.sessions[view["namespace"], view["id"]] = view
            assert data["count"] == len(self.sessions), "count is what the client holds"
            self.deltas += 1

    def replay(self, messages: list[Any]) -> Replica:
        for data in messages:
            self.apply(data)
        return self

    def ids(self) -> set[str]:
        return {id_ for _, id_ in self.sessions}


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


@pytest.fixture
def facade(start_facade: Callable[..., FacadeThread]) -> FacadeThread:
    return start_facade()


@pytest.fixture
def connect(facade: FacadeThread) -> Iterator[Callable[..., WebSocket]]:
    opened: list[WebSocket] = []

    def open_(user: str, role: str = "user", path: str = DELTA) -> WebSocket:
        ws = WebSocket(facade.url + path, token=token(user, role)).open()
        opened.append(ws)
        return ws

    yield open_
    for ws in opened:
        ws.close()


def spec(user: str, **extra: Any) -> dict[str, Any]:
    return {"user": user, "template": "firefox", "state": "running", **extra}


def delta_with(check: Callable[[dict[str, Any]], bool]) -> Callable[[Any], bool]:
    return lambda d: d["type"] == "sessions_delta" and check(d)


def upserts(name: str, check: Callable[[dict[str, Any]], bool] = lambda _: True) -> Any:
    return delta_with(lambda d: any(s["id"] == name and check(s) for s in d["upserted"]))


def messages(ws: WebSocket) -> list[Any]:
    return [m.data for m in ws.drain()]


def test_snapshot_then_deltas_to_those_who_see_the_session(
    connect: Callable[..., WebSocket], objects: Objects
) -> None:
    objects.create("sessions", "alice-before", spec("alice"))
    alice, bob, admin = connect("alice"), connect("bob"), connect("root", "admin")
    full = connect("alice", path=WS)  # the default format, side by side
    first = alice.next()
    assert first.data["type"] == "sessions_update" and first.data["reason"] == "subscribe"
    assert isinstance(first.data["seq"], int)
    wait_until(lambda: "alice-before" in Replica().replay(messages(alice)).ids(), 10)
    for ws in (bob, admin):
        assert ws.next().data["reason"] == "subscribe"

    objects.create("sessions", "alice-applied", spec("alice", tags=["kubectl"]))
    created = alice.next(upserts("alice-applied")).data
    assert [s["id"] for s in created["upserted"]] == ["alice-applied"], "only what changed"
    assert created["removed"] == []
    view = created["upserted"][0]
    assert view["user"] == "alice" and view["tags"] == ["kubectl"] and view["status"] == "Pending"
    admin.next(upserts("alice-applied"))
    full.next(lambda d: d["reason"] == "change" and d["count"] == 2)  # unchanged

    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-applied", {"spec": {"tags": ["moved"]}}
    )
    alice.next(upserts("alice-applied", lambda s: s["tags"] == ["moved"]))
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-applied"
    )
    gone = alice.next(delta_with(lambda d: bool(d["removed"]))).data
    assert gone["removed"] == [{"id": "alice-applied", "namespace": objects.ns}]
    assert gone["upserted"] == [] and gone["count"] == 1
    admin.next(delta_with(lambda d: d["removed"] == gone["removed"]))

    objects.create("sessions", "bob-own", spec("bob"))
    bob.next(upserts("bob-own"))
    # the full-format client's periodic snapshots go on; the delta clients get none
    full.next(lambda d: d["reason"] == "snapshot")
    full.next(lambda d: d["reason"] == "snapshot")
    for ws, expected in ((alice, {"alice-before"}), (admin, {"alice-before", "bob-own"})):
        replica = Replica().replay(messages(ws))
        assert replica.snapshots == ["subscribe"], "one snapshot, then only deltas"
        assert replica.ids() == expected
    bobs = messages(bob)
    assert "alice" not in str(bobs), "bob never hears of alice's sessions"
    assert Replica().replay(bobs).ids() == {"bob-own"}
    assert all(m.get("type") == "sessions_update" for m in messages(full))


def test_losing_sight_of_a_session_is_a_removal(
    connect: Callable[..., WebSocket], objects: Objects
) -> None:
    """A session being deleted (held by a finalizer) is gone for its owner at once; one of the
    same name recreated for another user reaches only that user."""
    alice, bob, admin = connect("alice"), connect("bob"), connect("ops", "operator")
    for ws in (alice, bob, admin):
        ws.next()
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Session",
        "metadata": {"name": "shared", "finalizers": ["test.stream.space/hold"]},
        "spec": spec("alice"),
    }
    objects.custom.create_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", body)
    alice.next(upserts("shared"))
    objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", "shared")
    removed = [{"id": "shared", "namespace": objects.ns}]
    for ws in (alice, admin):
        ws.next(delta_with(lambda d: d["removed"] == removed and d["count"] == 0))
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "shared", {"metadata": {"finalizers": None}}
    )
    assert wait_until(lambda: objects.get("sessions", "shared") is None, 30)

    objects.create("sessions", "shared", spec("bob"))
    bob.next(upserts("shared", lambda s: s["user"] == "bob"))
    admin.next(upserts("shared", lambda s: s["user"] == "bob"))
    objects.create("sessions", "alice-next", spec("alice"))
    alice.next(upserts("alice-next"))
    admin.next(upserts("alice-next"))  # each client hears at its own pace
    for ws, expected in ((alice, {"alice-next"}), (bob, {"shared"})):
        replica = Replica().replay(messages(ws))
        assert replica.ids() == expected
    assert "bob" not in str(messages(alice)), "alice never hears of bob's session"
    assert Replica().replay(messages(admin)).ids() == {"shared", "alice-next"}


def test_resync_request_yields_a_fresh_snapshot(
    facade: FacadeThread, connect: Callable[..., WebSocket], objects: Objects
) -> None:
    alice = connect("alice")
    start = alice.next().data["seq"]
    objects.create("sessions", "alice-one", spec("alice"))
    assert alice.next(upserts("alice-one")).data["seq"] == start + 1
    alice.send("not json")  # ignored, as is anything but a resync
    alice.send({"type": "hello"})
    alice.send({"type": "resync"})
    fresh = alice.next(lambda d: d["type"] == "sessions_update").data
    assert fresh["reason"] == "resync" and fresh["seq"] == start + 1
    assert [s["id"] for s in fresh["sessions"]] == ["alice-one"]
    objects.create("sessions", "alice-two", spec("alice"))
    assert alice.next(upserts("alice-two")).data["seq"] == start + 2
    replica = Replica().replay(messages(alice))
    assert replica.snapshots == ["subscribe", "resync"]
    assert replica.ids() == {"alice-one", "alice-two"}
    assert _metric(facade, "streamspace_websocket_resyncs_total", reason="resync") >= 1


def test_unknown_format_is_refused_before_the_upgrade(facade: FacadeThread) -> None:
    jwt = token("alice")
    reply = Client(facade.url, jwt).get(WS + "?format=xml")
    assert reply.status == 422 and "query.format" in reply.body["details"]["fields"]
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        WebSocket(facade.url + WS + "?format=xml", token=jwt).open()
    assert refused.value.status == 422
    with WebSocket(facade.url + WS + "?format=full", token=jwt) as ws:
        first = ws.next().data
        assert first["reason"] == "subscribe" and "seq" not in first


def test_lagging_delta_client_gets_a_fresh_snapshot_not_a_gap(
    start_facade: Callable[..., FacadeThread], objects: Objects
) -> None:
    """A client that stops reading until its queue overflows is not closed: what was queued is
    replaced by one snapshot, and the deltas after it continue from its sequence number."""
    facade = start_facade(WS_QUEUE="4")
    tags = [f"{i:02d}-" + "x" * 60 for i in range(32)]
    for n in range(40):  # snapshots of ~100 kB
        objects.create("sessions", f"alice-{n}", spec("alice", tags=tags))
    stalled = _raw_client(facade.url, DELTA, token("alice"))
    try:
        reader = Frames(stalled)
        assert reader.next()["reason"] == "subscribe"

        # Stop reading, and ask for snapshots (~100 kB each) until the socket buffers (a few MB
        # on loopback) are full: a request is taken as long as the last one was written, and
        # ignored once the server's writer waits with one queued.
        def resyncs() -> float:
            return _metric(facade, "streamspace_websocket_resyncs_total", reason="resync")

        for _ in range(200):
            taken = resyncs()
            stalled.sendall(_masked_text(b'{"type": "resync"}'))
            if not wait_until(lambda: resyncs() > taken, 2):  # noqa: B023
                break
        else:
            pytest.fail("the server's writer never waited")
        before = _metric(facade, "streamspace_websocket_resyncs_total", reason="lagging")
        drops = _metric(facade, "streamspace_websocket_dropped_total", reason="slow")
        for round_ in range(50):
            marker = f"{round_:04d}-" + "y" * 58
            objects.custom.patch_namespaced_custom_object(
                GROUP, VERSION, objects.ns, "sessions", "alice-0", {"spec": {"tags": [marker]}}
            )
            if wait_until(
                lambda: (
                    _metric(facade, "streamspace_websocket_resyncs_total", reason="lagging")
                    > before
                ),
                0.5,
            ):
                break
        else:
            pytest.fail("the stalled client's queue never overflowed")
        # read again: what was written, the fresh snapshot, then the deltas after it, no gap
        last = "last-" + "z" * 58
        objects.custom.patch_namespaced_custom_object(
            GROUP, VERSION, objects.ns, "sessions", "alice-0", {"spec": {"tags": [last]}}
        )
        replica = Replica()
        replica.apply(reader.seen[0])
        while replica.sessions[objects.ns, "alice-0"]["tags"] != [last]:
            replica.apply(reader.next())
        assert replica.snapshots[0] == "subscribe" and replica.snapshots[-1] == "lagging"
        assert set(replica.snapshots[1:-1]) == {"resync"}
        assert replica.deltas >= 1, "the change after the fresh snapshot came as a delta"
        assert _metric(facade, "streamspace_websocket_dropped_total", reason="slow") == drops
    finally:
        stalled.close()


def _masked_text(payload: bytes) -> bytes:
    """A client's text frame (clients must mask; a zero mask keeps the payload as is)."""
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


class Frames:
    """Server frames (unmasked, text) read from a raw socket, decoded as JSON."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.seen: list[Any] = []

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "the server closed the stream"
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def next(self) -> Any:
        import json  # noqa: PLC0415

        while True:
            head = self._read(2)
            opcode, size = head[0] & 0x0F, head[1] & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(size)
            assert opcode != 0x8, f"closed by the server: {payload!r}"
            if opcode == 0x1:
                data = json.loads(payload)
                self.seen.append(data)
                return data


def _raw_client(base: str, path: str, jwt: str) -> socket.socket:
    """A WebSocket client with a tiny receive buffer that reads only when told to."""
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
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


def _metric(facade: FacadeThread, name: str, **labels: str) -> float:
    """A counter of the facade (the registry is per process: all facades of this run)."""
    text = Client(facade.url).get("/metrics").body
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_watch_command_follows_deltas(facade: FacadeThread, objects: Objects) -> None:
    """``streamspace watch sessions --delta --summary``: the snapshot, then a line per delta."""
    command = [
        sys.executable, "-m", "streamspace.cli", "watch", "sessions", "--delta", "--summary",
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
            objects.create("sessions", "alice-watched", spec("alice"))
            line = lines.get(timeout=30)
            assert " delta " in line and ": 1 +[alice-watched=Pending] -[]" in line, line
            objects.custom.delete_namespaced_custom_object(
                GROUP, VERSION, objects.ns, "sessions", "alice-watched"
            )
            assert ": 0 +[] -[alice-watched]" in lines.get(timeout=30)
        finally:
            watcher.terminate()
            reader.join(10)


def test_idle_warnings_reach_delta_subscribers_who_see_the_session(
    start_facade: Callable[..., FacadeThread], objects: Objects
) -> None:
    facade = start_facade(HIBERNATE_WARNING="60s")
    objects.create("sessions", "alice-idle", spec("alice"))
    alice = WebSocket(facade.url + DELTA, token=token("alice")).open()
    bob = WebSocket(facade.url + DELTA, token=token("bob")).open()
    try:
        alice.next()
        bob.next()
        deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=62)
        status = {"phase": "Running", "idleDeadline": timestamp(deadline)}
        objects.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, objects.ns, "sessions", "alice-idle", {"status": status}
        )
        warning = alice.next(lambda d: d["type"] == "hibernate_warning", timeout=15)
        assert warning.data["sessionId"] == "alice-idle" and "seq" not in warning.data
        # the warning is not part of the sequence: the deltas around it stay contiguous
        objects.create("sessions", "alice-next", spec("alice"))
        alice.next(upserts("alice-next"))
        Replica().replay([m for m in messages(alice) if m["type"] != "hibernate_warning"])
        objects.create("sessions", "bob-own", spec("bob"))
        bob.next(upserts("bob-own"))
        assert all(m["type"] != "hibernate_warning" for m in messages(bob))
        # someone who subscribes inside the warning window is warned after the snapshot
        late = WebSocket(facade.url + DELTA, token=token("root", "admin")).open()
        try:
            assert late.next().data["reason"] == "subscribe"
            late.next(lambda d: d["type"] == "hibernate_warning" and d["user"] == "alice")
        finally:
            late.close()
    finally:
        alice.close()
        bob.close()
