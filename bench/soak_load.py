"""The soak's mixed load: a population of sessions kept over REST, and a steady stream of what
users do with them.

``USERS`` users (role ``user``, each with its own token) own the sessions. Operations start at a
fixed rate, each one drawn at random with the weights of ``WEIGHTS``:

* ``heartbeat`` (35): the open connection heartbeated longest ago (so open connections stay
  fresh; one the operator dropped as stale answers 404 and is forgotten),
* ``connect`` (15): a random session (a hibernated one wakes); when ``MAX_CONNECTIONS`` are open
  it is a ``disconnect`` instead, so the connections stay few enough to heartbeat,
* ``disconnect`` (15): a random open connection,
* ``hibernate`` (10) / ``wake`` (10): a random running / hibernated session (``PATCH`` its
  ``state``),
* ``churn`` (15): ``delete`` a random session while the population is full, else ``create``
  one for a random user; the population stays at its target, the names change.

One operation per session at a time (a session in flight is not drawn again); at most
``IN_FLIGHT`` operations at once, and a tick that finds them all busy is counted as skipped, not
queued, so a slow facade shows as skipped ticks instead of a growing backlog in the client.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bench.common import SESSIONS, percentile

USERS = 20
MAX_CONNECTIONS = 50
IN_FLIGHT = 16
WEIGHTS = {
    "heartbeat": 35,
    "connect": 15,
    "disconnect": 15,
    "hibernate": 10,
    "wake": 10,
    "churn": 15,
}


@dataclass
class Session:
    name: str
    user: str
    state: str = "running"  # as last asked for (the idle timer may have hibernated it since)
    connections: dict[str, float] = field(default_factory=dict)  # id → last heartbeat


class Load:
    def __init__(
        self, url: str, tokens: dict[str, str], template: str, target: int, seed: int = 15
    ) -> None:
        self.url = url
        self.tokens = tokens
        self.template = template
        self.target = target
        self.rng = random.Random(seed)
        self.sessions: dict[str, Session] = {}
        self.busy: set[str] = set()
        self.statuses: dict[str, Counter[str]] = defaultdict(Counter)
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self.started = 0
        self.skipped = 0

    async def _call(
        self,
        http: aiohttp.ClientSession,
        op: str,
        user: str,
        method: str,
        path: str,
        *,
        body: Any = None,
    ) -> tuple[int, Any]:
        started = time.perf_counter()
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        try:
            async with http.request(method, self.url + path, json=body, headers=headers) as resp:
                status = resp.status
                answer = await resp.json() if resp.content_type == "application/json" else None
        except (aiohttp.ClientError, TimeoutError):
            status, answer = 0, None
        self.statuses[op][str(status)] += 1
        self.seconds[op].append(time.perf_counter() - started)
        return status, answer

    async def create(self, http: aiohttp.ClientSession, user: str | None = None) -> None:
        user = user or self.rng.choice(list(self.tokens))
        body = {"template": self.template}
        status, answer = await self._call(http, "create", user, "POST", SESSIONS, body=body)
        if status == 201:
            self.sessions[answer["id"]] = Session(answer["id"], user)

    async def populate(self, http: aiohttp.ClientSession) -> None:
        """Create sessions until the population reaches its target, eight at a time."""
        users = list(self.tokens)
        missing = iter(range(self.target - len(self.sessions)))

        async def creator() -> None:
            for i in missing:
                await self.create(http, users[i % len(users)])

        await asyncio.gather(*(creator() for _ in range(8)))

    def _pick(self, wanted: str | None = None, connected: bool = False) -> Session | None:
        free = [
            s
            for s in self.sessions.values()
            if s.name not in self.busy
            and (wanted is None or s.state == wanted)
            and (not connected or s.connections)
        ]
        return self.rng.choice(free) if free else None

    def _open_connections(self) -> int:
        return sum(len(s.connections) for s in self.sessions.values())

    async def _operate(self, http: aiohttp.ClientSession, op: str) -> None:
        if op == "connect" and self._open_connections() >= MAX_CONNECTIONS:
            op = "disconnect"
        if op == "churn":
            if len(self.sessions) < self.target:
                await self.create(http)
                return
            op = "delete"
        session = self._choose(op)
        if session is None:
            self.statuses[op]["nothing to do"] += 1
            return
        self.busy.add(session.name)
        try:
            await self._act(http, op, session)
        finally:
            self.busy.discard(session.name)

    def _choose(self, op: str) -> Session | None:
        if op == "heartbeat":
            free = [s for s in self.sessions.values() if s.connections and s.name not in self.busy]
            return min(free, key=lambda s: min(s.connections.values()), default=None)
        if op == "disconnect":
            return self._pick(connected=True)
        if op == "hibernate":
            return self._pick("running")
        if op == "wake":
            return self._pick("hibernated")
        return self._pick()

    async def _act(self, http: aiohttp.ClientSession, op: str, s: Session) -> None:
        path = f"{SESSIONS}/{s.name}"
        if op in ("heartbeat", "disconnect"):
            conn = min(s.connections, key=s.connections.__getitem__)
            status, _ = await self._call(
                http, op, s.user, "POST", f"{path}/{op}?connectionId={conn}"
            )
            if status == 200 and op == "heartbeat":
                s.connections[conn] = time.monotonic()
            elif status in (200, 404):  # disconnected, or dropped as stale by the operator
                del s.connections[conn]
        elif op == "connect":
            status, answer = await self._call(http, op, s.user, "GET", f"{path}/connect")
            if status == 200:
                s.connections[answer["connectionId"]] = time.monotonic()
                s.state = "running"
        elif op in ("hibernate", "wake"):
            state = "hibernated" if op == "hibernate" else "running"
            status, _ = await self._call(http, op, s.user, "PATCH", path, body={"state": state})
            if status == 200:
                s.state = state
        elif op == "delete":
            status, _ = await self._call(http, op, s.user, "DELETE", path)
            if status in (204, 404):
                del self.sessions[s.name]

    async def run(self, http: aiohttp.ClientSession, seconds: float, rate: float) -> None:
        """Start ``rate`` operations per second for ``seconds``; then wait for those in flight."""
        ops, weights = list(WEIGHTS), list(WEIGHTS.values())
        flying: set[asyncio.Task[None]] = set()
        tick = time.monotonic()
        end = tick + seconds
        while tick < end:
            if len(flying) >= IN_FLIGHT:
                self.skipped += 1
            else:
                task = asyncio.create_task(self._operate(http, self.rng.choices(ops, weights)[0]))
                flying.add(task)
                task.add_done_callback(flying.discard)
                self.started += 1
            tick += 1 / rate
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.gather(*flying)

    def figures(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "skipped_ticks": self.skipped,
            "sessions_at_end": len(self.sessions),
            "connections_at_end": self._open_connections(),
            "by_operation": {
                op: {
                    "statuses": dict(sorted(self.statuses[op].items())),
                    "p50_ms": round(percentile(self.seconds[op], 50) * 1000, 1),
                    "p99_ms": round(percentile(self.seconds[op], 99) * 1000, 1),
                }
                for op in sorted(self.statuses)
            },
        }
