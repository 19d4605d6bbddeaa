"""The client side of scenario ``ws``: worker processes holding the WebSocket subscribers.

Each worker runs an asyncio loop with its share of ``ws_connect``\\s, takes ``time.time()`` as a
frame arrives and reports per-client results over a pipe; :class:`Workers` drives them from the
benchmark process (broadcast a command, gather the replies).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import resource
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

import aiohttp

STREAM = "/api/v1/ws/sessions"
WORKERS = max(2, min(4, (os.cpu_count() or 2) - 1))


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); return the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


BATCH = 25  # concurrent handshakes per worker


@dataclass
class Client:
    role: str
    token: str
    ws: aiohttp.ClientWebSocketResponse | None = None
    task: asyncio.Task[None] | None = None
    connect_s: float | None = None
    error: str | None = None
    seen: dict[int, float] = field(default_factory=dict)  # round → time.time() of the marker
    via: dict[int, str] = field(default_factory=dict)  # round → the message's ``reason``
    first: dict[str, Any] | None = None  # shape of the first message
    messages: int = 0
    chars: int = 0
    deltas: int = 0  # sessions_delta messages
    seq: int | None = None  # the last sequence number (delta clients)
    gaps: int = 0  # deltas whose seq was not the last one + 1
    other: Counter[str] = field(default_factory=Counter)  # messages of other types
    closed: str | None = None  # set when the server ended the stream before we did

    def report(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "connect_s": self.connect_s,
            "error": self.error,
            "seen": self.seen,
            "via": self.via,
            "first": self.first,
            "messages": self.messages,
            "chars": self.chars,
            "deltas": self.deltas,
            "gaps": self.gaps,
            "other": dict(self.other),
            "closed": self.closed,
        }


def _shape(data: str) -> dict[str, Any]:
    import json  # noqa: PLC0415 - only for the first message of each client

    try:
        body = json.loads(data)
    except ValueError:
        return {"type": "not JSON", "bytes": len(data.encode())}
    sessions = body.get("sessions") if isinstance(body, dict) else None
    return {
        "type": body.get("type") if isinstance(body, dict) else type(body).__name__,
        "sessions": len(sessions) if isinstance(sessions, list) else None,
        "bytes": len(data.encode()),
    }


UPDATE = '{"type": "sessions_update"'
DELTA = '{"type": "sessions_delta"'


def _reason(data: str) -> str:
    """The ``reason`` of a sessions_update (change, snapshot, subscribe), found from the end;
    ``delta`` for a sessions_delta."""
    if data.startswith(DELTA):
        return "delta"
    at = data.rfind('"reason": "')
    if at < 0:
        return "?"
    start = at + len('"reason": "')
    return data[start : data.find('"', start)]


def _seq(data: str, at: int) -> int:
    """The integer after ``"seq": `` at ``at`` (a substring scan: no JSON parsing per frame)."""
    start = at + len('"seq": ')
    end = start
    while data[end].isdigit():
        end += 1
    return int(data[start:end])


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Share:
    """What a worker process is given: whom to connect as, and how."""

    url: str
    tokens: dict[str, str]  # role → token
    roles: list[str]  # one per client
    compress: int  # zlib window bits offered for permessage-deflate; 0 offers none
    query: str = ""  # e.g. "?format=delta"


class Subscribers:
    """One worker's share of the clients, driven by commands from the benchmark process."""

    def __init__(self, commands: Connection, replies: Connection, share: Share) -> None:
        self.commands, self.replies = commands, replies
        self.url = share.url + STREAM + share.query
        self.compress = share.compress
        self.clients = [Client(role, share.tokens[role]) for role in share.roles]
        self.armed: tuple[int, str] | None = None
        self.hits = 0
        self.done_sent = True
        self.closing = False
        self.lags: list[float] = []  # how late this loop woke from 10 ms sleeps
        self.open = 0

    async def _watch_lag(self) -> None:
        """A client loop that is behind delays the timestamps it takes: record by how much."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(0.01)
            self.lags.append(loop.time() - started - 0.01)

    def open_clients(self) -> int:
        """Clients connected and not closed by the server (a count kept as they come and go:
        a scan of every client on each delivery cost O(clients²) per round)."""
        return self.open

    def _check_done(self) -> None:
        if self.armed is not None and not self.done_sent and self.hits >= self.open_clients():
            self.done_sent = True
            self.replies.send(("done", self.armed[0], self.hits))

    async def _read(self, c: Client, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            now = time.time()
            if msg.type is not aiohttp.WSMsgType.TEXT:
                c.other[msg.type.name] += 1
                continue
            data: str = msg.data
            c.messages += 1
            c.chars += len(data)
            armed = self.armed
            if armed is not None and armed[1] in data and armed[0] not in c.seen:
                c.seen[armed[0]] = now
                c.via[armed[0]] = _reason(data)
                self.hits += 1
                self._check_done()
            if data.startswith(DELTA):
                seq = _seq(data, data.find('"seq": '))
                c.gaps += c.seq is not None and seq != c.seq + 1
                c.seq, c.deltas = seq, c.deltas + 1
            elif data.startswith(UPDATE):
                at = data.rfind('"seq": ')
                if at >= 0:
                    c.seq = _seq(data, at)
            else:
                c.other[str(_shape(data)["type"])] += 1
            if c.first is None:
                c.first = _shape(data)
        if not self.closing:
            c.closed = f"code {ws.close_code}, {ws.exception()!r}"
            self.open -= 1
            self._check_done()

    async def _connect(self, http: aiohttp.ClientSession, c: Client) -> None:
        started = time.perf_counter()
        try:
            ws = await asyncio.wait_for(
                http.ws_connect(
                    self.url,
                    headers={"Authorization": f"Bearer {c.token}"},
                    compress=self.compress,
                ),
                60,
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            c.error = f"{type(exc).__name__}: {exc}"[:200]
            return
        c.connect_s = time.perf_counter() - started
        c.ws = ws
        self.open += 1
        c.task = asyncio.create_task(self._read(c, ws))

    async def _connect_all(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        started = time.perf_counter()
        for i in range(0, len(self.clients), BATCH):
            await asyncio.gather(*(self._connect(http, c) for c in self.clients[i : i + BATCH]))
        seconds = time.perf_counter() - started
        # Every stream starts with a snapshot; wait for them (bounded) before reporting. A poll
        # at 10 Hz, not an Event: the readers' hot path stays a substring test.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(  # noqa: ASYNC110
            c.ws is not None and c.closed is None and c.first is None for c in self.clients
        ):
            await asyncio.sleep(0.1)
        return {"connected": self.open_clients(), "seconds": seconds, "cpu": _cpu_seconds()}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        lag: asyncio.Task[None] | None = None
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        ) as http:
            while True:
                command = await loop.run_in_executor(None, self.commands.recv)
                if command[0] == "connect":
                    self.replies.send(("connected", await self._connect_all(http)))
                    lag = asyncio.create_task(self._watch_lag())
                elif command[0] == "arm":
                    self.armed, self.hits, self.done_sent = (command[1], command[2]), 0, False
                    self.replies.send(("armed", command[1]))
                    self._check_done()  # nobody left to wait for
                elif command[0] == "report":
                    if lag is not None:
                        lag.cancel()
                    reports = [c.report() for c in self.clients]
                    self.replies.send(
                        ("report", {"clients": reports, "cpu": _cpu_seconds(), "lag": self.lags})
                    )
                elif command[0] == "close":
                    self.closing = True
                    await asyncio.gather(
                        *(c.ws.close() for c in self.clients if c.ws is not None),
                        return_exceptions=True,
                    )
                    await asyncio.gather(
                        *(c.task for c in self.clients if c.task is not None),
                        return_exceptions=True,
                    )
                    self.replies.send(("closed", None))
                    return


def _worker(commands: Connection, replies: Connection, share: Share) -> None:
    raise_nofile()
    asyncio.run(Subscribers(commands, replies, share).run())


class Workers:
    """The worker processes and their pipes: broadcast a command, gather the replies."""

    def __init__(
        self,
        url: str,
        roles: list[str],
        compress: int,
        tokens: dict[str, str],
        query: str = "",
    ) -> None:
        """``tokens``: a bearer token per role, minted by the caller (a spawned worker imports
        the benchmark module afresh, with another JWT secret); ``query``: the stream's, e.g.
        ``?format=delta``."""
        ctx = multiprocessing.get_context("spawn")
        self.commands: list[Connection] = []
        self.replies: list[Connection] = []
        self.processes = []
        for i in range(WORKERS):
            receive, send = ctx.Pipe(duplex=False)
            reply_receive, reply_send = ctx.Pipe(duplex=False)
            share = Share(url, tokens, roles[i::WORKERS], compress, query)
            proc = ctx.Process(target=_worker, args=(receive, reply_send, share), daemon=True)
            proc.start()
            self.commands.append(send)
            self.replies.append(reply_receive)
            self.processes.append(proc)

    def _gather(self, wanted: Callable[[tuple[Any, ...]], bool], timeout: float) -> list[Any]:
        """Each worker's first reply that ``wanted`` accepts (None where none came in time)."""
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + timeout
        while len(answers) < len(self.replies):
            pending = [c for i, c in enumerate(self.replies) if i not in answers]
            ready = wait(pending, max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            for conn in ready:
                assert isinstance(conn, Connection)
                reply = conn.recv()
                if wanted(reply):  # e.g. a late "done" of an earlier round is dropped
                    answers[self.replies.index(conn)] = reply
        return [answers.get(i) for i in range(len(self.replies))]

    def ask(self, *command: Any, expect: str, timeout: float) -> list[Any]:
        """Send ``command`` to every worker; the payloads of their ``expect`` replies."""
        for pipe in self.commands:
            pipe.send(command)
        replies = self._gather(lambda reply: reply[0] == expect, timeout)
        return [None if r is None else r[1] for r in replies]

    def wait_done(self, round_: int, timeout: float) -> list[int | None]:
        """Hits per worker once each has seen ``round_`` at all its clients (None: deadline)."""
        replies = self._gather(lambda r: r[0] == "done" and r[1] == round_, timeout)
        return [None if r is None else r[2] for r in replies]

    def stop(self) -> None:
        for proc in self.processes:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
