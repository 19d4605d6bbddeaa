"""The real facade in a thread of the test process, and a small synchronous HTTP client for it."""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from aiohttp import web

from streamspace.auth.tokens import mint_hs256
from streamspace.config import Settings
from streamspace.dev.process import free_port
from streamspace_facade.app import create_app

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
        runner = web.AppRunner(self.app, shutdown_timeout=5)
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


def token(user: str, role: str = "user") -> str:
    return mint_hs256(JWT_SECRET, user, role, timedelta(hours=1))
