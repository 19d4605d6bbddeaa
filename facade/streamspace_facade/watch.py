"""``streamspace watch``: print a facade's WebSocket stream, one message per line (a client).

Like ``kubectl get -w`` for the facade: ``sessions`` (``sessions_update`` and
``hibernate_warning`` messages), ``cluster`` (``metrics_update``) or ``logs <namespace>/<pod>``.
``--summary`` prints one short line per sessions message instead of the JSON. ``--delta``
follows ``sessions`` as deltas (``?format=delta``: a snapshot, then only ``sessions_delta``
messages); on a gap in their sequence numbers it asks the server for a fresh snapshot
(``{"type": "resync"}``) and says so on stderr. The token comes from ``--token`` or
``STREAMSPACE_TOKEN`` and travels in the Authorization header.

``sessions`` and ``cluster`` reconnect when the stream is lost (a replica killed, restarted or
shutting down, a proxy cutting the connection): after a random delay up to ``RECONNECT_BASE``
doubled per failed attempt, at most ``RECONNECT_CAP`` ("full jitter", so that the clients of a
replica that died do not all come back in the same instant). Nothing is lost meanwhile: the
server's first message on every connection is a full snapshot, printed like any other. The
attempts start over once a connection delivers a message. A refusal that another attempt
cannot change (401, 403, 404), and the closes the server means (1000, 1008 policy, 4401
credentials no longer valid) end the command. ``logs`` does not reconnect: a log has no
snapshot, so lines would repeat or go missing; ``--no-reconnect`` turns it off everywhere.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

STREAMS = ("sessions", "cluster", "logs")
SNAPSHOT_STREAMS = ("sessions", "cluster")
"""Streams whose first message is the whole current state, so a reconnect loses nothing."""

RECONNECT_BASE = 0.5
"""Seconds: the upper bound of the first reconnect delay, doubled per failed attempt."""
RECONNECT_CAP = 30.0
"""Seconds: the largest upper bound of a reconnect delay."""
FINAL_CLOSES = frozenset({1000, 1008, 4401})
"""Close codes that end the command: normal end, policy violation, credentials refused."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""Handshake answers worth another attempt (overload, not ready yet, a proxy's own errors)."""
HEARTBEAT = 10.0
"""Seconds between our pings: a peer that vanished without a FIN is noticed within 1.5x this."""


def stream_url(api: str, stream: str, target: str | None = None, *, delta: bool = False) -> str:
    """The ws:// URL of ``stream`` on the facade at ``api`` (http:// or https://); ``delta``:
    the sessions stream as deltas."""
    base = api.rstrip("/").replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    if stream == "logs":
        namespace, _, pod = (target or "").partition("/")
        if not namespace or not pod:
            raise ValueError("logs needs <namespace>/<pod>")
        return f"{base}/api/v1/ws/logs/{quote(namespace, safe='')}/{quote(pod, safe='')}"
    if stream not in STREAMS:
        raise ValueError(f"unknown stream {stream!r}; choose from {', '.join(STREAMS)}")
    if delta:
        if stream != "sessions":
            raise ValueError("--delta is for the sessions stream")
        return f"{base}/api/v1/ws/sessions?format=delta"
    return f"{base}/api/v1/ws/{stream}"


def summary(data: Any) -> str:
    """One line for a stream message: what a person watching wants to see."""
    if not isinstance(data, dict):
        return str(data)
    kind, at = data.get("type"), data.get("timestamp", "")
    if kind == "sessions_update":
        sessions = ", ".join(f"{s.get('id')}={s.get('phase')}" for s in data.get("sessions") or [])
        return f"{at} {data.get('reason', 'update')}: {data.get('count', 0)} [{sessions}]"
    if kind == "sessions_delta":
        upserted = ", ".join(f"{s.get('id')}={s.get('phase')}" for s in data.get("upserted") or [])
        removed = ", ".join(str(s.get("id")) for s in data.get("removed") or [])
        return f"{at} delta {data.get('seq')}: {data.get('count', 0)} +[{upserted}] -[{removed}]"
    if kind == "hibernate_warning":
        return f"{at} WARNING {data.get('sessionId')} hibernates at {data.get('idleDeadline')}"
    return json.dumps(data, separators=(",", ":"))


def backoff(attempt: int, rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before reconnect ``attempt`` (0 first): full jitter, capped."""
    bound = min(RECONNECT_CAP, RECONNECT_BASE * 2.0 ** min(attempt, 32))
    return rand() * bound


@dataclass(frozen=True)
class Outcome:
    """How one connection ended."""

    messages: int = 0
    """Messages it delivered (0 when the handshake failed)."""
    close_code: int | None = None
    status: int | None = None
    """The HTTP status of a refused handshake."""
    error: str | None = None

    def final(self) -> bool:
        """True when another attempt would be refused again, or the server ended it on purpose."""
        if self.status is not None:
            return self.status not in RETRY_STATUSES
        return self.close_code in FINAL_CLOSES

    def describe(self) -> str:
        if self.status is not None:
            return f"refused: HTTP {self.status}"
        if self.error is not None:
            return f"cannot connect: {self.error}"
        return f"stream closed ({self.close_code})"


def _line(data: Any, brief: bool) -> str:
    if brief:
        return summary(data)
    return data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))


async def _follow(
    session: aiohttp.ClientSession,
    url: str,
    token: str,
    *,
    brief: bool,
    out: TextIO,
    err: TextIO = sys.stderr,
) -> Outcome:
    """One connection: print its messages until it ends; say how it ended."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        ws = await session.ws_connect(url, headers=headers, heartbeat=HEARTBEAT, max_msg_size=0)
    except aiohttp.WSServerHandshakeError as exc:
        return Outcome(status=exc.status)
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(error=str(exc) or type(exc).__name__)
    messages = 0
    seq: int | None = None  # of a delta stream; None: waiting for a snapshot
    async with ws:
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.CLOSE:  # the server's close frame, with its code
                return Outcome(messages=messages, close_code=int(msg.data))
            if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                # cut without a close frame (a killed server, a proxy): 1006, as browsers say;
                # aiohttp itself may report 1000 for a connection that just ended
                return Outcome(messages=messages, close_code=1006)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
            except ValueError:
                data = msg.data  # log lines are plain text
            print(_line(data, brief), file=out, flush=True)
            messages += 1
            kind = data.get("type") if isinstance(data, dict) else None
            if kind == "sessions_update" and "seq" in data:
                seq = int(data["seq"])
            elif kind == "sessions_delta" and seq is not None:
                if int(data["seq"]) == seq + 1:
                    seq += 1
                elif int(data["seq"]) > seq:
                    print(f"gap after {seq}: asking for a snapshot", file=err, flush=True)
                    seq = None
                    await ws.send_str(json.dumps({"type": "resync"}))


async def watch(
    url: str,
    token: str,
    *,
    brief: bool,
    reconnect: bool = True,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    rand: Callable[[], float] = random.random,
) -> int:
    """Print the stream at ``url``; with ``reconnect``, follow it across lost connections."""
    attempt = 0
    async with aiohttp.ClientSession() as session:
        while True:
            outcome = await _follow(session, url, token, brief=brief, out=out, err=err)
            if outcome.messages:
                attempt = 0  # it worked: the next loss starts from the shortest delay
            if not reconnect or outcome.final():
                print(outcome.describe(), file=err, flush=True)
                return 0 if outcome.close_code in (1000, 1001) else 1
            delay = backoff(attempt, rand)
            attempt += 1
            print(f"{outcome.describe()}; reconnecting in {delay:.2f}s", file=err, flush=True)
            await asyncio.sleep(delay)


def run(
    api: str,
    stream: str,
    target: str | None,
    token: str,
    *,
    brief: bool,
    reconnect: bool = True,
    delta: bool = False,
) -> int:
    try:
        url = stream_url(api, stream, target, delta=delta)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    again = reconnect and stream in SNAPSHOT_STREAMS
    try:
        return asyncio.run(watch(url, token, brief=brief, reconnect=again))
    except KeyboardInterrupt:
        return 0
