"""A facade replica SIGKILLed under 500 WebSocket clients: they come back, and lose nothing.

Two facade replicas run as real processes (``faults.Product``: ``python -m streamspace.cli
facade``, SIGKILLed with its process group) on one namespace and one database, on the shared
control plane (killing a facade disturbs nobody else). Half of 500 "browser tabs" reach replica A through a loopback TCP
relay playing the load balancer, half are on replica B directly; ``streamspace watch`` runs as a
process through the relay too. Each tab runs the reconnect algorithm documented for browsers
(docs/ARCHITECTURE.md, "Reconnecting"), transliterated line by line in :class:`Tab`.

1. Held outage: the relay refuses new connections, A is SIGKILLed, and while every client of A
   is away (retrying with backoff) each user's session changes and the watcher gets a new
   session over REST. A restarts, the relay lets connections through again (to A or B in turn),
   and every client's first message after reconnecting must be a full snapshot that has the
   change in it. The tabs on B saw the changes live and never lost their stream.
2. Free-running: A is SIGKILLed again with the relay open; its clients reconnect to B at once.

Reconnect times are printed (``-s``), never asserted. The load balancer is an asyncio relay
of its own (``Relay`` here), not ``faults.Relay``: it spreads connections over several
backends, skips a dead one, can refuse while "no backend is healthy", and relays 500
connections without a thread per direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client

from facade_testing import JWT_SECRET, token
from faults import Product, facade_url
from streamspace.db.migrate import migrate
from streamspace_dev import process
from streamspace_testing import GROUP, TEMPLATE, VERSION, Objects

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

USERS = 50
TABS = 500
WATCHER = "watcher"
DEADLINE = 180.0
"""Seconds any condition may take here: generous, the machine is shared and busy."""
STREAM = "/api/v1/ws/sessions"
DOC = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"


# -- the documented browser algorithm ----------------------------------------------------------

BASE_MS, CAP_MS = 500, 30000
FINAL = (1000, 1008, 4401)


@dataclass
class Tab:
    """``followSessions()`` of docs/ARCHITECTURE.md as a browser runs it, with a record of what
    it saw: the first message of every connection that was served, and when each was lost."""

    url: str
    user: str
    stopped: bool = False
    served: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    lost: list[float] = field(default_factory=list)
    failed: int = 0
    """Connection attempts that never got a message (refused, cut during the handshake)."""
    latest: list[dict[str, Any]] = field(default_factory=list)
    connecting: list[float] = field(default_factory=list)
    """Seconds from each served connection's attempt to its first message."""
    socket: aiohttp.ClientWebSocketResponse | None = None

    async def follow(self, http: aiohttp.ClientSession) -> None:
        attempt = 0
        loop = asyncio.get_running_loop()
        while True:
            # new WebSocket(url, ["streamspace.v1", "bearer." + getToken()]), from the page's origin
            code, messages, began = 1006, 0, loop.time()
            try:
                self.socket = await http.ws_connect(
                    self.url,
                    protocols=("streamspace.v1", f"bearer.{token(self.user)}"),
                    origin=self.url.replace("ws://", "http://").removesuffix(STREAM),
                    max_msg_size=0,
                )
            except (aiohttp.ClientError, OSError):
                pass  # a browser sees only onclose, with 1006
            else:
                while True:
                    msg = await self.socket.receive()
                    if msg.type is aiohttp.WSMsgType.CLOSE:  # a close frame: event.code
                        code = int(msg.data)
                        break
                    if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break  # cut without a close frame: 1006
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    # onmessage
                    attempt = 0
                    data = json.loads(msg.data)
                    if messages == 0:
                        self.served.append((loop.time(), data))
                        self.connecting.append(loop.time() - began)
                    messages += 1
                    if data["type"] == "sessions_update":
                        self.latest = data["sessions"]  # replace, never merge
            # onclose
            if messages:
                self.lost.append(loop.time())
            else:
                self.failed += 1
            if self.stopped or code in FINAL:
                return
            delay = random.random() * min(CAP_MS, BASE_MS * 2**attempt)  # noqa: S311
            attempt += 1
            await asyncio.sleep(delay / 1000)

    async def stop(self) -> None:
        self.stopped = True
        if self.socket is not None:
            await self.socket.close()


# -- the load balancer and the replicas --------------------------------------------------------


class Relay:
    """A loopback TCP load balancer: each connection goes to the next backend that accepts.

    ``hold`` makes it close new connections at once (no backend is healthy) until ``release``.
    When either side of a relayed connection ends, so does the other (a killed backend's
    clients see their connection cut, without a close frame)."""

    def __init__(self, backends: list[int]) -> None:
        self.backends = backends
        self.holding = False
        self.routed: dict[int, int] = {}
        self.active: dict[int, int] = {}
        """Connections open now, by backend port."""
        self.port = 0
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        if not self.holding:
            start = next(self._turn)
            for i in range(len(self.backends)):
                port = self.backends[(start + i) % len(self.backends)]
                with contextlib.suppress(OSError):
                    upstream = await asyncio.open_connection("127.0.0.1", port)
                    self.routed[port] = self.routed.get(port, 0) + 1
                    self.active[port] = self.active.get(port, 0) + 1
                    break
        if upstream is None:
            await _close(writer)
            self._writers.discard(writer)
            return
        self._writers.add(upstream[1])
        pumps = [
            asyncio.create_task(_pump(reader, upstream[1])),
            asyncio.create_task(_pump(upstream[0], writer)),
        ]
        self._pumps.update(pumps)
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        self._pumps.difference_update(pumps)
        self.active[port] -= 1
        for side in (writer, upstream[1]):
            await _close(side)
            self._writers.discard(side)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            await _close(writer)
        if self._server is not None:
            await self._server.wait_closed()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def replica(env: dict[str, str], log: Path) -> Product:
    """A facade process (not started yet) on a port of its own, as the harness runs one."""
    port = process.free_port()
    argv = [sys.executable, "-m", "streamspace.cli", "facade", "--host=127.0.0.1"]
    return Product("facade", [*argv, f"--port={port}"], env, log, f"http://127.0.0.1:{port}/ready")


def port_of(facade: Product) -> int:
    return int(facade_url(facade).rsplit(":", 1)[1])


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float, what: str) -> None:
    """Wait for ``check`` (sync or async) with a deadline; fail saying ``what``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while True:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        assert loop.time() < deadline, what
        await asyncio.sleep(0.1)


def spread(label: str, values: list[float], unit: str = "s") -> str:
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return (
        f"{label}: n={len(ordered)} min {ordered[0]:.2f}{unit} p50 {q(0.5):.2f}{unit} "
        f"p90 {q(0.9):.2f}{unit} p99 {q(0.99):.2f}{unit} max {ordered[-1]:.2f}{unit}"
    )


def ids(sessions: list[dict[str, Any]]) -> set[str]:
    return {s["id"] for s in sessions}


def tagged(sessions: list[dict[str, Any]], tag: str) -> bool:
    return bool(sessions) and all(tag in s["tags"] for s in sessions if s["id"].endswith("-s1"))


@dataclass
class Watch:
    """``streamspace watch sessions`` as a process: its JSON lines and its complaints."""

    proc: asyncio.subprocess.Process
    lines: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def read(self) -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None

        async def out() -> None:
            assert self.proc.stdout is not None
            async for line in self.proc.stdout:
                self.lines.append(json.loads(line))

        async def err() -> None:
            assert self.proc.stderr is not None
            async for line in self.proc.stderr:
                self.errors.append(line.decode().strip())

        await asyncio.gather(out(), err())


@pytest.mark.asyncio
async def test_a_killed_replica_s_clients_reconnect_to_a_full_current_snapshot(
    api: client.ApiClient, database: str, namespace: str, cluster: Any, tmp_path: Path
) -> None:
    doc = DOC.read_text()
    assert f"BASE_MS = {BASE_MS}, CAP_MS = {CAP_MS};" in doc, (
        "Tab must run the documented algorithm"
    )
    assert f"FINAL = [{', '.join(map(str, FINAL))}];" in doc
    migrate(database)
    objects = Objects(api, namespace)
    objects.create("templates", "firefox", TEMPLATE)
    users = [f"u{i:02d}" for i in range(USERS)]
    for user in [*users, WATCHER]:
        objects.create("sessions", f"{user}-s1", {"user": user, "template": "firefox"})
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "KUBECONFIG": str(cluster.kubeconfig),
        "NAMESPACE": namespace,
        "DATABASE_URL": database,
        "JWT_SECRET": JWT_SECRET,
        "RATE_LIMIT_CREATE": "off",
    }
    a, b = replica(env, tmp_path / "a.log"), replica(env, tmp_path / "b.log")
    a_port, b_port = port_of(a), port_of(b)
    relay = await Relay([a_port]).start()
    via_relay = f"ws://127.0.0.1:{relay.port}{STREAM}"
    tabs = [
        Tab(via_relay if i < TABS // 2 else f"ws://127.0.0.1:{b_port}{STREAM}", users[i % USERS])
        for i in range(TABS)
    ]
    near, far = tabs[: TABS // 2], tabs[TABS // 2 :]  # near: behind the relay, on A at first
    probe = Tab(f"ws://127.0.0.1:{b_port}{STREAM}", WATCHER)  # sees what B has
    tasks: list[asyncio.Task[None]] = []
    watch: Watch | None = None
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        try:
            await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
            tasks = [asyncio.create_task(t.follow(http)) for t in [*tabs, probe]]
            await until(lambda: all(t.served for t in [*tabs, probe]), DEADLINE, "not all served")
            cmd = [sys.executable, "-m", "streamspace.cli", "watch", "sessions"]
            watch = Watch(
                await asyncio.create_subprocess_exec(
                    *cmd, "--url", f"http://127.0.0.1:{relay.port}",
                    env={**os.environ, "STREAMSPACE_TOKEN": token(WATCHER)},
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
            )  # fmt: skip
            tasks.append(asyncio.create_task(watch.read()))
            await until(lambda: bool(watch and watch.lines), DEADLINE, "watch printed nothing")
            assert watch.lines[0]["reason"] == "subscribe"
            assert ids(watch.lines[0]["sessions"]) == {f"{WATCHER}-s1"}

            # -- 1. held outage: everything changes while A's clients are away ------------------
            relay.holding = True
            killed = loop.time()
            await asyncio.to_thread(a.kill)
            await until(lambda: all(t.lost for t in near), DEADLINE, "A's tabs never lost it")
            await until(lambda: any("reconnecting" in e for e in watch.errors), DEADLINE, "watch")
            for user in users:
                await asyncio.to_thread(
                    objects.custom.patch_namespaced_custom_object,
                    GROUP, VERSION, namespace, "sessions", f"{user}-s1",
                    {"spec": {"tags": ["after-kill"]}},
                )  # fmt: skip
            headers = {"Authorization": f"Bearer {token(WATCHER)}"}
            async with http.post(
                facade_url(b) + "/api/v1/sessions", json={"template": "firefox"}, headers=headers
            ) as reply:
                assert reply.status == 201, await reply.text()
                created = (await reply.json())["id"]
            watched = {f"{WATCHER}-s1", created}
            # B's copy has every change (its tabs saw them live): a snapshot from B is current
            await until(lambda: all(tagged(t.latest, "after-kill") for t in far), DEADLINE, "B")
            await until(lambda: ids(probe.latest) == watched, DEADLINE, "B never saw the create")
            assert all(not t.lost for t in far), "B's tabs lost their stream"
            assert all(len(t.served) == 1 for t in near), "a tab got through the held relay"
            await asyncio.to_thread(a.start)  # a new pod in the dead one's place
            failed_before = [t.failed for t in near]
            relay.backends = [a_port, b_port]
            relay.holding = False
            released = loop.time()
            await until(lambda: all(len(t.served) == 2 for t in near), DEADLINE, "not back")
            await until(
                lambda: any(x.get("reason") == "subscribe" for x in watch.lines[1:]),
                DEADLINE,
                "streamspace watch did not come back",
            )

            for tab in near:
                _, first = tab.served[1]
                assert first["type"] == "sessions_update" and first["reason"] == "subscribe"
                assert ids(first["sessions"]) == {f"{tab.user}-s1"} and first["count"] == 1
                assert first["sessions"][0]["tags"] == ["after-kill"], (tab.user, first)
            # the first line of the watch's second connection
            again = next(x for x in watch.lines[1:] if x.get("reason") == "subscribe")
            assert ids(again["sessions"]) == watched, "the watch's snapshot missed the create"
            assert watch.proc.returncode is None, "streamspace watch gave up"
            retries = [e for e in watch.errors if "reconnecting in" in e]
            print(
                f"\nheld outage: A killed, back {released - killed:.1f}s later; routed {relay.routed}"
            )
            print(spread("  kill -> stream lost", [t.lost[0] - killed for t in near]))
            print(spread("  kill -> first snapshot", [t.served[1][0] - killed for t in near]))
            print(spread("  release -> first snapshot", [t.served[1][0] - released for t in near]))
            attempts = [t.failed - n for t, n in zip(near, failed_before, strict=True)]
            print(spread("  failed attempts, held", [float(n) for n in failed_before], ""))
            print(spread("  failed attempts after release", [float(n) for n in attempts], ""))
            print(f"  streamspace watch: {len(retries)} attempts; {retries[-1]}")

            # -- 2. free-running: A killed again, its clients go straight to B ------------------
            on_a, lost_before = relay.active[a_port], len(watch.errors)
            killed = loop.time()
            await asyncio.to_thread(a.kill)
            await until(lambda: relay.active[a_port] == 0, DEADLINE, "A's connections stay")

            def moved() -> list[Tab]:
                return [t for t in near if len(t.lost) == 2]

            def all_lost() -> bool:
                return len(moved()) + (len(watch.errors) > lost_before) == on_a

            await until(all_lost, DEADLINE, "not every client of A noticed")
            await until(lambda: all(len(t.served) == 3 for t in moved()), DEADLINE, "not back")
            for tab in moved():
                _, first = tab.served[2]
                assert first["reason"] == "subscribe", first
                assert ids(first["sessions"]) == {f"{tab.user}-s1"}, first
            print(f"free-running: {len(moved())} tabs were on A when it was killed")
            print(spread("  kill -> stream lost", [t.lost[1] - killed for t in moved()]))
            print(spread("  kill -> first snapshot", [t.served[2][0] - killed for t in moved()]))
            print(spread("  attempt -> first snapshot", [t.connecting[2] for t in moved()]))
        finally:
            await asyncio.gather(*(t.stop() for t in [*tabs, probe]), return_exceptions=True)
            if watch is not None and watch.proc.returncode is None:
                watch.proc.terminate()
                await watch.proc.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await relay.close()
            a.stop()
            b.stop()
