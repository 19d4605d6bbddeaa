"""The plugin event delivery worker: posts the outbox's deliveries, signed, at least once.

It runs on the replica that writes the mirror (``Mirror`` starts it with its other tasks when
it takes the lock and cancels it when it loses the lock), so there is one worker per mirror
scope. Each round it claims due deliveries (``storage.deliveries``: oldest first, one per plugin
and subject, leased), posts each as a CloudEvents structured JSON body with Standard Webhooks
headers signed with the plugin's secret, and settles it: delivered on a 2xx, otherwise pending
again after a full-jitter backoff, or dead once the retry budget is spent. A new event wakes it
at once (``Mirror.queued``); so does a settled delivery (the next of its subject is due).

Outbound rules: a plugin's own in-cluster URL (``http://plugin-<name>.<ns>.svc:<port>/events``,
set by the operator for runnable plugins) is used as is; any other URL must be https and its
host must resolve only to addresses ``streamspace.catalog.netguard`` allows (private ranges only
with ``ALLOW_PRIVATE_NETWORKS``). Addresses are checked by the connector's resolver, so the
address checked is the address connected to. Redirects are not followed.

The signing secret comes from the Secret ``plugin-<name>`` (key ``signing-secret``) and is used
only when the Secret is owned by the Plugin the delivery is for (its uid); it is cached briefly.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import re
import socket
import ssl
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from streamspace import events
from streamspace.catalog.netguard import refusal
from streamspace.config import EventSettings
from streamspace.plugins import secret as plugin_secret
from streamspace_facade.errors import ApiError
from streamspace_facade.kube import Kube
from streamspace_facade.metrics import EVENT_DELIVERIES, EVENT_LATENCY, EVENT_OUTBOX_DEPTH
from streamspace_facade.storage import StorageError
from streamspace_facade.storage.deliveries import DeliveryStore, Due

log = logging.getLogger(__name__)

MAX_ANSWER = 64 * 1024  # bytes of a receiver's answer read (and dropped)


class Undeliverable(Exception):
    """This attempt cannot be made (no usable secret, a refused URL): it counts as failed."""


class GuardedResolver(AbstractResolver):
    """Resolves as usual, then refuses a host any of whose addresses netguard refuses."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for entry in found:
            why = refusal(ipaddress.ip_address(entry["host"]), self.allow_private)
            if why is not None:
                raise OSError(f"{host} resolves to {why}; refused (ALLOW_PRIVATE_NETWORKS)")
        return found

    async def close(self) -> None:
        await self._inner.close()


def in_cluster_url(due: Due) -> bool:
    """The plugin's own Service URL, as the operator sets it for a runnable plugin."""
    pattern = rf"http://plugin-{re.escape(due.plugin_name)}\.{re.escape(due.plugin_namespace)}"
    return (
        re.fullmatch(pattern + r"\.svc(\.cluster\.local)?:[0-9]{1,5}/events", due.url) is not None
    )


def url_problem(due: Due, allow_private: bool) -> str | None:
    """Why the delivery's URL may not be used (the checks that need no resolver), or None."""
    if in_cluster_url(due):
        return None
    parts = urlsplit(due.url)
    if parts.scheme != "https" or not parts.hostname:
        return "the plugin's URL must be https"
    with contextlib.suppress(ValueError):  # a name: checked when it is resolved
        why = refusal(ipaddress.ip_address(parts.hostname), allow_private)
        if why is not None:
            return f"the plugin's URL is {why}; refused (ALLOW_PRIVATE_NETWORKS)"
    return None


class Secrets:
    """Signing secrets by plugin, read from the Plugin's own Secret, cached briefly."""

    def __init__(self, kube: Kube, ttl: float, clock: Callable[[], float] = time.monotonic):
        self.kube = kube
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, str], tuple[str, str, float]] = {}

    async def get(self, namespace: str, plugin: str, uid: str) -> str:
        cached = self._cache.get((namespace, plugin))
        if cached is not None and cached[0] == uid and cached[2] > self.clock():
            return cached[1]
        name = plugin_secret.secret_name(plugin)
        try:
            obj = await self.kube.get_secret(namespace, name)
        except ApiError as exc:
            raise Undeliverable(f"the plugin's Secret {name}: {exc.message}") from None
        if not plugin_secret.owned_by(obj, uid):
            raise Undeliverable(f"the Secret {name} is not owned by this plugin")
        secret = plugin_secret.signing_secret(obj)
        if not secret:
            raise Undeliverable(f"the Secret {name} has no {plugin_secret.SIGNING_KEY}")
        self._cache[(namespace, plugin)] = (uid, secret, self.clock() + self.ttl)
        return secret


class Deliverer:
    """One worker: claims, posts and settles deliveries until cancelled."""

    def __init__(
        self,
        store: DeliveryStore,
        kube: Kube,
        settings: EventSettings,
        *,
        allow_private: bool,
        wake: asyncio.Event,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.allow_private = allow_private
        self.wake = wake
        self.draw = draw
        self.secrets = Secrets(kube, settings.secret_cache.total_seconds())
        self.policy = events.RetryPolicy(
            settings.retry_base, settings.retry_cap, settings.retry_budget
        )
        self._in_flight: set[asyncio.Task[None]] = set()
        self._counted = 0.0

    def _client(self) -> aiohttp.ClientSession:
        context = ssl.create_default_context()
        if self.settings.ca_bundle is not None:
            context.load_verify_locations(cafile=str(self.settings.ca_bundle))
        connector = aiohttp.TCPConnector(
            ssl=context, resolver=GuardedResolver(self.allow_private), limit=0
        )
        timeout = aiohttp.ClientTimeout(total=self.settings.delivery_timeout.total_seconds())
        return aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": "streamspace-events"}
        )

    async def run(self) -> None:
        """Deliver until cancelled; a database outage pauses it, never stops it."""
        poll = self.settings.poll_interval.total_seconds()
        last_prune = 0.0
        async with self._client() as client:
            try:
                while True:
                    self.wake.clear()
                    try:
                        await self._round(client)
                        if time.monotonic() - last_prune > 3600:
                            last_prune = time.monotonic()
                            await self.store.prune(self.settings.retention)
                    except StorageError as exc:
                        log.warning("event delivery paused: %s", exc)
                    except Exception:  # a bug: logged, and the mirror it runs beside goes on
                        log.exception("event delivery round failed")
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(poll):
                            await self.wake.wait()
            finally:
                for task in list(self._in_flight):
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)
                EVENT_OUTBOX_DEPTH.set(0)

    async def _round(self, client: aiohttp.ClientSession) -> None:
        free = self.settings.concurrency - len(self._in_flight)
        if free > 0:
            for due in await self.store.claim(free, self.settings.lease):
                task = asyncio.create_task(self._deliver(client, due), name=f"deliver {due.id}")
                self._in_flight.add(task)
                task.add_done_callback(self._done)
        now = time.monotonic()
        if now - self._counted >= self.settings.poll_interval.total_seconds():
            self._counted = now  # a count per poll, not per settled delivery
            EVENT_OUTBOX_DEPTH.set(await self.store.pending())

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self.wake.set()  # the next delivery of its subject is due now

    async def _deliver(self, client: aiohttp.ClientSession, due: Due) -> None:
        try:
            code, error = await self._post(client, due)
            if code is not None and events.delivered(code):
                latency = await self.store.delivered(due, code)
                EVENT_DELIVERIES.labels("delivered").inc()
                if latency is not None:
                    EVENT_LATENCY.observe(latency / 1000)
                return
            outcome = events.after_failure(self.policy, due.attempts, datetime.now(UTC), self.draw)
            await self.store.failed(due, outcome.status, outcome.next_attempt_at, code, error)
            EVENT_DELIVERIES.labels("dead" if outcome.status == "dead" else "retry").inc()
            log.info(
                "delivery %s of %s to plugin %s/%s failed (attempt %d, %s): %s",
                due.id,
                due.type,
                due.plugin_namespace,
                due.plugin_name,
                due.attempts,
                outcome.status,
                error,
            )
        except StorageError as exc:
            # the attempt's result is not stored: its lease runs out and it goes again
            log.warning("delivery %s not settled: %s", due.id, exc)
        except Exception:  # a bug: logged once; the lease runs out and it goes again
            log.exception("delivery %s failed unexpectedly", due.id)

    async def _post(self, client: aiohttp.ClientSession, due: Due) -> tuple[int | None, str]:
        """One attempt: (the receiver's status or None, what went wrong)."""
        problem = url_problem(due, self.allow_private)
        if problem is not None:
            return None, problem
        try:
            secret = await self.secrets.get(
                due.plugin_namespace, due.plugin_name, str(due.plugin_uid)
            )
            body, content_type = events.envelope(
                str(due.event_id), due.type, due.subject, due.namespace, due.time, due.data
            )
            headers = events.signature_headers(secret, str(due.id), datetime.now(UTC), body)
            headers["Content-Type"] = content_type
            async with client.post(
                due.url, data=body, headers=headers, allow_redirects=False
            ) as answer:
                await answer.content.read(MAX_ANSWER)
                return answer.status, f"HTTP {answer.status}"
        except Undeliverable as exc:
            return None, str(exc)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
