"""The real facade in a thread of the test process, and a small synchronous HTTP client for it."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
from aiohttp import web

from streamspace.auth.tokens import mint_hs256
from streamspace.config import Settings
from streamspace_dev.process import free_port, wait_until
from streamspace_facade.app import AccessLog, create_app
from streamspace_facade.state import SERVICES

JWT_SECRET = "test-jwt-secret-of-enough-length-for-hs256"
WEBHOOK_SECRET = "test-webhook-secret"


class FacadeThread:
    """``create_app(settings)`` served on 127.0.0.1 by its own event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = free_port()  # outside the ephemeral range: no race with clients
        self.url = f"http://127.0.0.1:{self.port}"
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.app: web.Application | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="facade", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self.ready.set()
        finally:
            # as asyncio.run does: finish what is still pending, so sockets close in this loop
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.app = create_app(self.settings)
        runner = web.AppRunner(self.app, shutdown_timeout=5, access_log_class=AccessLog)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def start(self) -> FacadeThread:
        self.thread.start()
        assert self.ready.wait(60), "facade did not start"
        assert self.error is None, self.error
        return self

    def mirrored(self, timeout: float = 60) -> FacadeThread:
        """This facade once its mirror holds the lock and has listed every table."""
        assert self.app is not None
        mirror = self.app[SERVICES].mirror
        assert wait_until(mirror.ready.is_set, timeout), "the mirror did not become ready"
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the facade's loop (to reach its services from a test)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._stop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "facade did not stop"
        assert self.error is None, self.error


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<{self.status} {json.dumps(self.body)[:300]}>"


class Client:
    """HTTP against the facade as one caller (a bearer token, or none)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Response:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json"} if data is not None else {}
        if self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        parts = urllib.parse.urlsplit(self.base)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=60)
        try:  # one connection per request, always closed: no socket outlives its request
            connection.request(method, path, body=data, headers=sent)
            reply = connection.getresponse()
            return Response(reply.status, _decode(reply.read()), dict(reply.headers))
        finally:
            connection.close()

    def get(self, path: str, **kw: Any) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Response:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Response:
        return self.request("DELETE", path, **kw)


def _decode(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def token(user: str, role: str = "user", groups: Sequence[str] | None = None) -> str:
    return mint_hs256(JWT_SECRET, user, role, timedelta(hours=1), groups=groups)


ENDS = (
    aiohttp.WSMsgType.CLOSE,
    aiohttp.WSMsgType.CLOSING,
    aiohttp.WSMsgType.CLOSED,
    aiohttp.WSMsgType.ERROR,
)


@dataclass
class Received:
    at: float
    """``time.monotonic()`` when the message arrived."""
    data: Any
    """The decoded JSON, or the text as is when it is not JSON (log lines)."""


class WebSocket:
    """A WebSocket client of the facade with a loop of its own in a thread.

    Messages are collected with their arrival time; ``close_code`` is set once the server (or
    the network) ends the stream. ``autoping=False`` makes a client that never answers pings.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        protocols: tuple[str, ...] = (),
        autoping: bool = True,
    ) -> None:
        self.url = url.replace("http://", "ws://", 1)
        self.headers = dict(headers or {})
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.protocols = protocols
        self.autoping = autoping
        self.messages: queue.Queue[Received] = queue.Queue()
        self.seen: list[Received] = []
        self.protocol: str | None = None
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.failure: BaseException | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._thread = threading.Thread(target=self._run, name="websocket", daemon=True)

    def open(self) -> WebSocket:
        """Connect; raises the handshake failure (e.g. ``WSServerHandshakeError`` with .status)."""
        self._thread.start()
        assert self.connected.wait(30), "no WebSocket handshake within 30 s"
        if self.failure is not None:
            self._thread.join(10)
            raise self.failure
        return self

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    async def _main(self) -> None:
        try:
            await self._session()
        finally:
            # closed transports finish closing on the next loop iterations; let them before the
            # loop goes away, or they are reported unclosed when collected
            await asyncio.sleep(0.05)

    async def _session(self) -> None:
        async with aiohttp.ClientSession() as session:
            try:
                ws = await session.ws_connect(
                    self.url,
                    headers=self.headers,
                    protocols=self.protocols,
                    autoping=self.autoping,
                    max_msg_size=0,
                )
            except BaseException as exc:
                self.failure = exc
                self.connected.set()
                self.closed.set()
                return
            self._ws = ws
            self.protocol = ws.protocol
            self.connected.set()
            try:
                while True:
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        self.messages.put(Received(time.monotonic(), _decode(msg.data.encode())))
                    elif msg.type in ENDS:
                        if msg.type is aiohttp.WSMsgType.CLOSE:
                            self.close_reason = str(msg.extra or "")
                        break
            finally:
                if not ws.closed:
                    await ws.close()
                self.close_code = ws.close_code
                self.closed.set()

    def next(self, match: Callable[[Any], bool] = lambda _: True, timeout: float = 10) -> Received:
        """The next message that ``match`` accepts; the others are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching message within {timeout}s; got {self.seen[-3:]}")
            try:
                received = self.messages.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.closed.is_set() and self.messages.empty():
                    raise AssertionError(
                        f"stream closed ({self.close_code}) before a matching message"
                    ) from None
                continue
            self.seen.append(received)
            if match(received.data):
                return received

    def drain(self) -> list[Received]:
        """Everything received so far and not yet taken."""
        while True:
            try:
                self.seen.append(self.messages.get_nowait())
            except queue.Empty:
                return self.seen

    def send(self, data: Any) -> None:
        """Send ``data`` as a JSON text message."""
        assert self._ws is not None, "not connected"
        ws = self._ws
        asyncio.run_coroutine_threadsafe(ws.send_str(json.dumps(data)), self._loop).result(10)

    def close(self) -> None:
        if self._ws is not None and not self.closed.is_set():
            asyncio.run_coroutine_threadsafe(self._ws.close(), self._loop).result(10)
        self._thread.join(10)

    def __enter__(self) -> WebSocket:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
