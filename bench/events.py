"""Scenario `events`: plugin events from a Session change to their receipt at a receiver.

100 sessions change continuously: each flips its ``status.phase`` between ``Running`` and
``Hibernated`` every ``EVENTS_PERIOD`` seconds (2) for ``EVENTS_SECONDS`` (60), written with
the status subresource as the operator writes it, so that no pods are needed and only the event
pipeline is measured. The facade (a
process of its own, minimal control plane, throw-away PostgreSQL) mirrors each change, derives
``session.hibernated``/``session.woken`` in the mirror's transaction, and its delivery worker
posts each, signed, to a loopback HTTPS receiver in this process that verifies the signature.

Measured: events per second received, latency from the status patch's answer to the receipt
(p50/p99; the k-th event of a session is the k-th change of it, which in-order delivery per
subject guarantees), the outbox depth (pending deliveries, read from PostgreSQL every 0.25 s)
during the load and while it drains, and the facade's mirror lag (watch events received, not yet
written: a backlog before the outbox). Duplicates and missing events are counted.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import ssl
import statistics
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import trustme
from aiohttp import web
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks.webhooks import Webhook

from bench.common import (
    GROUP,
    VERSION,
    api_client,
    control_plane,
    database,
    facade,
    namespace_with_firefox,
    print_table,
    summary,
    write_results,
)
from streamspace_dev import process

NAMESPACE = "bench-events"
JWT_SECRET = secrets.token_urlsafe(32)
SESSIONS = 100
PERIOD = float(os.environ.get("EVENTS_PERIOD", "2"))  # seconds between two changes of a session
DURATION = float(os.environ.get("EVENTS_SECONDS", "60"))  # seconds of load
DRAIN = 120.0  # seconds the backlog may take to arrive afterwards


class Receiver:
    """HTTPS on loopback; verifies each signature and stamps each event's arrival."""

    def __init__(self, secret: str, context: ssl.SSLContext) -> None:
        self.webhook = Webhook(secret)
        self.context = context
        self.port = process.free_port()
        self.arrivals: dict[str, list[tuple[str, float]]] = defaultdict(list)  # subject →
        self.ids: set[str] = set()
        self.duplicates = 0
        self.bad = 0
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(30)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/events", self._handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.context).start()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        now = time.monotonic()
        try:
            event = self.webhook.verify(body, dict(request.headers))
        except Exception:
            with self.lock:
                self.bad += 1
            return web.Response(status=401)
        with self.lock:
            if event["id"] in self.ids:
                self.duplicates += 1
            else:
                self.ids.add(event["id"])
                self.arrivals[event["subject"]].append((event["type"], now))
        return web.Response(status=204)

    def count(self) -> int:
        with self.lock:
            return len(self.ids)

    def close(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)


def _install_plugin(api: client.ApiClient, url: str, secret: str) -> None:
    custom = client.CustomObjectsApi(api)
    plugin = custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, "plugins",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Plugin", "metadata": {"name": "bench"},
         "spec": {"catalogPlugin": {"repository": "plugins", "name": "bench"},
                  "config": {"url": url}}},
    )  # fmt: skip
    owner = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Plugin", "name": "bench",
             "uid": plugin["metadata"]["uid"], "controller": True}  # fmt: skip
    client.CoreV1Api(api).create_namespaced_secret(
        NAMESPACE,
        {"metadata": {"name": "plugin-bench", "ownerReferences": [owner]},
         "stringData": {"signing-secret": secret}},
    )  # fmt: skip
    status = {"phase": "Ready", "pluginType": "webhook", "events": ["session.*"], "url": url}
    custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, "plugins", "bench", {"status": status}
    )


def _mirror_lag(url: str) -> float:
    """The facade's ``streamspace_mirror_lag_seconds``: watch events not yet written."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as reply:  # noqa: S310 (loopback)
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "streamspace_mirror_lag_seconds":
            return float(family.samples[0].value)
    return 0.0


def _pending(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM plugin_deliveries WHERE status = 'pending'"
        ).fetchone()
    return int(row[0]) if row else 0


def _drive(api: client.ApiClient, names: list[str]) -> dict[str, list[float]]:
    """Flip every session's phase every PERIOD s for DURATION s; when each patch was answered."""
    custom = client.CustomObjectsApi(api)
    changed: dict[str, list[float]] = defaultdict(list)
    lock = threading.Lock()
    start = time.monotonic()

    def flip(index: int) -> None:
        name = names[index]
        offset = PERIOD * index / len(names)  # spread the sessions over the period
        rounds = int(DURATION / PERIOD)
        for k in range(rounds):
            due = start + offset + k * PERIOD
            time.sleep(max(0.0, due - time.monotonic()))  # the load's schedule, not a wait
            phase = "Hibernated" if k % 2 == 0 else "Running"
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, NAMESPACE, "sessions", name, {"status": {"phase": phase}}
            )
            with lock:
                changed[f"sessions/{name}"].append(time.monotonic())

    # one thread per session: each mostly sleeps until its next change is due
    threads = [threading.Thread(target=flip, args=(i,), daemon=True) for i in range(len(names))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return changed


def run() -> dict[str, Any]:
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    receiver = Receiver(secret, context)
    results: dict[str, Any] = {"sessions": SESSIONS, "period_s": PERIOD, "duration_s": DURATION}
    with (
        tempfile.TemporaryDirectory(prefix="streamspace-bench-events-") as tmp,
        control_plane("minimal") as kubeconfig,
        database() as database_url,
    ):
        ca_file = Path(tmp) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        namespace_with_firefox(kubeconfig, NAMESPACE)
        os.environ.update(
            EVENT_CA_BUNDLE=str(ca_file), ALLOW_PRIVATE_NETWORKS="true", EVENT_POLL_INTERVAL="1s"
        )
        api = api_client(kubeconfig)
        with facade(kubeconfig, database_url, NAMESPACE, JWT_SECRET) as front:
            _install_plugin(api, f"https://127.0.0.1:{receiver.port}/events", secret)
            custom = client.CustomObjectsApi(api)
            names = [f"bench-{i:03d}" for i in range(SESSIONS)]
            for name in names:
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, "sessions",
                    {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Session",
                     "metadata": {"name": name},
                     "spec": {"user": "bench", "template": "firefox", "state": "running"}},
                )  # fmt: skip
            if not process.wait_until(lambda: receiver.count() >= SESSIONS, 120):
                raise RuntimeError(f"only {receiver.count()} session.created arrived")
            baseline = receiver.count()
            depth: list[tuple[float, int]] = []
            lag: list[float] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    depth.append((time.monotonic(), _pending(database_url)))
                    lag.append(_mirror_lag(front.url))
                    stop.wait(0.25)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu0, began = front.cpu_seconds(), time.monotonic()
            changed = _drive(api, names)
            load_end = time.monotonic()
            sent = sum(len(v) for v in changed.values())
            process.wait_until(lambda: receiver.count() - baseline >= sent, DRAIN)
            drained = time.monotonic()
            stop.set()
            sampler.join()
            cpu = front.cpu_seconds() - cpu0

    receiver.close()
    latencies: list[float] = []
    received = 0
    for subject, times in changed.items():
        arrivals = [
            t for kind, t in receiver.arrivals[subject] if kind != "space.stream.session.created"
        ]
        received += len(arrivals)
        latencies.extend(a - c for c, a in zip(times, arrivals, strict=False))
    during = [d for t, d in depth if t <= load_end]
    after = [d for t, d in depth if t > load_end]
    results.update(
        changes=sent,
        received=received,
        missing=sent - received,
        duplicates=receiver.duplicates,
        bad_signatures=receiver.bad,
        events_per_second=round(received / (drained - began), 1),
        offered_per_second=round(sent / (load_end - began), 1),
        latency=summary(latencies),
        outbox_depth={
            "max_during_load": max(during, default=0),
            "mean_during_load": round(statistics.fmean(during), 1) if during else 0,
            "max_while_draining": max(after, default=0),
            "drain_seconds": round(drained - load_end, 2),
        },
        mirror_lag_max_s=round(max(lag, default=0.0), 2),
        facade_cpu_percent=round(100 * cpu / (drained - began), 1),
        cpu_count=os.cpu_count(),
    )
    return results


def main() -> None:
    r = run()
    lat, depth = r["latency"], r["outbox_depth"]
    print_table(
        f"events ({r['sessions']} sessions, a change each every {r['period_s']} s for "
        f"{r['duration_s']} s; minimal profile, facade as a process, {r['cpu_count']} cores)",
        [
            ("changes made / events received", f"{r['changes']} / {r['received']}"),
            ("offered / delivered events per second",
             f"{r['offered_per_second']} / {r['events_per_second']}"),
            ("change → receipt", f"p50 {lat['p50_ms']} ms   p99 {lat['p99_ms']} ms   "
                                 f"max {lat['max_ms']} ms   (n={lat['n']})"),
            ("outbox depth during load: max / mean",
             f"{depth['max_during_load']} / {depth['mean_during_load']}"),
            ("drain after the load", f"{depth['drain_seconds']} s"),
            ("mirror lag (watch event → row written), max", f"{r['mirror_lag_max_s']} s"),
            ("missing / duplicates / bad signatures",
             f"{r['missing']} / {r['duplicates']} / {r['bad_signatures']}"),
            ("facade CPU", f"{r['facade_cpu_percent']} % of one core"),
        ],
    )  # fmt: skip
    print(f"\nwritten to {write_results('events', results=r)}")
