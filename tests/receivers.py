"""A real plugin event receiver for tests: HTTPS on loopback, every signature checked.

``Receiver`` serves ``POST /events`` with TLS (a certificate for 127.0.0.1 and localhost from
a test CA made with ``trustme``; the facade trusts it through ``EVENT_CA_BUNDLE``), verifies
each request with the ``standardwebhooks`` library and the plugin's secret, and records what
it got. It can go ``down`` (connections refused) and come back ``up`` on the same port, answer
an error status, or ``hold`` requests unanswered (a receiver busy while the facade dies).

``serve_get`` is a plain HTTP stand-in for a server whose answers a test scripts (the
operator client's tests play the API server with it).

``install_plugin`` makes a Plugin as a running operator would leave it (status Ready with its
events and URL) and its owned Secret ``plugin-<name>`` with the signing secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web
from kubernetes import client
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from streamspace_dev.process import free_port
from streamspace_testing import GROUP, VERSION


@dataclass(frozen=True)
class Got:
    """One verified request."""

    delivery_id: str  # webhook-id
    event: dict[str, Any]  # the CloudEvent

    @property
    def type(self) -> str:
        return str(self.event["type"]).removeprefix("space.stream.")

    @property
    def subject(self) -> str:
        return str(self.event["subject"])


@dataclass
class Receiver:
    secret: str
    ca_file: Path
    port: int = field(default_factory=free_port)
    got: list[Got] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # what failed verification, and why
    status: int = 204
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _runner: web.AppRunner | None = None
    _held: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _context: ssl.SSLContext | None = None
    requests: int = 0  # answered or not, verified or not

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/events"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def start(self, context: ssl.SSLContext) -> Receiver:
        self._context = context
        self._thread = threading.Thread(target=self._run, name="receiver", daemon=True)
        self._thread.start()
        self.up()
        return self

    async def _handle(self, request: web.Request) -> web.Response:
        answer = await self._answer(request)
        answer.force_close()  # no idle keep-alive connection outlives the receiver
        return answer

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.requests += 1
        if self._held is not None:
            await self._held.wait()
        if not self.secret:  # not told the plugin's secret yet: not ready (the sender retries)
            return web.Response(status=503)
        try:
            Webhook(self.secret).verify(body, dict(request.headers))
        except WebhookVerificationError as exc:
            with self._lock:
                self.refused.append(str(exc))
            return web.Response(status=401)
        if request.headers.get("Content-Type") != "application/cloudevents+json":
            with self._lock:
                self.refused.append(f"content type {request.headers.get('Content-Type')}")
            return web.Response(status=415)
        if self.status < 300:
            with self._lock:
                self.got.append(Got(request.headers["webhook-id"], json.loads(body)))
        return web.Response(status=self.status)

    async def _up(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self._context, reuse_address=True
        )
        await site.start()

    async def _down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        """Stop listening and drop open connections: attempts are refused."""
        self.release()
        self._call(self._down())

    def hold(self) -> None:
        """Accept requests but leave them unanswered until ``release``."""

        async def make() -> None:
            self._held = asyncio.Event()

        self._call(make())

    def release(self) -> None:
        async def free() -> None:
            if self._held is not None:
                self._held.set()
                self._held = None

        self._call(free())

    def stop(self) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop.close()

    def events(self) -> list[Got]:
        with self._lock:
            return list(self.got)


def tls(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A server context for 127.0.0.1/localhost, and the CA file that trusts it."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca_file = tmp / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return context, ca_file


async def serve_get(handler: Any) -> tuple[web.AppRunner, int]:
    """A loopback HTTP server answering every GET with ``handler``: its runner (to clean up)
    and its port."""
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def install_plugin(
    api: client.ApiClient,
    namespace: str,
    name: str,
    url: str,
    secret: str,
    events: Sequence[str] = ("session.*", "connection.*"),
) -> dict[str, Any]:
    """A Ready webhook Plugin (status as an operator writes it) and its owned signing Secret."""
    custom = client.CustomObjectsApi(api)
    plugin = custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "plugins",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Plugin",
            "metadata": {"name": name},
            "spec": {
                "catalogPlugin": {"repository": "plugins", "name": name},
                "config": {"url": url},
            },
        },
    )
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": f"plugin-{name}",
                "labels": {"stream.space/plugin": name},
                "ownerReferences": [
                    {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Plugin",
                        "name": name,
                        "uid": plugin["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "stringData": {"signing-secret": secret, "config.json": "{}"},
        },
    )
    status = {
        "phase": "Ready",
        "pluginType": "webhook",
        "events": list(events),
        "url": url,
        "secretName": f"plugin-{name}",
    }
    result: dict[str, Any] = custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "plugins", name, {"status": status}
    )
    return result
