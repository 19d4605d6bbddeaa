"""The mirror writes watch events that arrive together in one transaction, keeping the outbox's
promises: the events a change means are recorded with it, in order per subject.

Real kube-apiserver, PostgreSQL and a loopback HTTPS receiver. The writer is held (its write
lock taken on the facade's own loop) while a burst of changes arrives, so that they are queued
behind it, then let go.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from facade_testing import Client, FacadeThread
from receivers import Receiver, install_plugin, new_secret, tls
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    context, ca_file = tls(tmp_path)
    got = Receiver(new_secret(), ca_file).start(context)
    yield got
    got.stop()


def batches(facade: FacadeThread) -> tuple[float, float]:
    """Transactions of the sessions table so far, and the events they held."""
    count = total = 0.0
    for family in text_string_to_metric_families(Client(facade.url).get("/metrics").body):
        for sample in family.samples:
            if sample.labels.get("table") != "sessions":
                continue
            if sample.name == "streamspace_mirror_batch_events_count":
                count = sample.value
            elif sample.name == "streamspace_mirror_batch_events_sum":
                total = sample.value
    return count, total


def test_a_burst_is_one_transaction_with_its_events_in_order(
    start_facade: Callable[..., FacadeThread],
    database: str,
    receiver: Receiver,
    api: client.ApiClient,
    namespace: str,
) -> None:
    objects = Objects(api, namespace)
    facade = start_facade(
        DATABASE_URL=database, EVENT_CA_BUNDLE=str(receiver.ca_file), EVENT_POLL_INTERVAL="200ms"
    )
    assert facade.app is not None
    services = facade.app[SERVICES]
    mirror = services.mirror
    assert wait_until(mirror.ready.is_set, timeout=60)
    install_plugin(api, namespace, "audit", receiver.url, receiver.secret)

    def plugin_ready() -> bool:
        with psycopg.connect(database) as conn:
            row = conn.execute("SELECT phase FROM installed_plugins WHERE id = 'audit'").fetchone()
        return row is not None and row[0] == "Ready"

    assert wait_until(plugin_ready, 30)
    names = [f"alice-burst-{i}" for i in range(5)]
    steps = ["Running", "Hibernated", "Running", "Terminated"]
    writing: asyncio.Lock = mirror._writing  # held: the burst queues behind it
    facade.call(writing.acquire())
    try:
        before = batches(facade)
        for name in names:
            objects.create("sessions", name, {"user": "alice", "template": "firefox"})
        for phase in steps:
            for name in names:
                objects.custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, "sessions", name, {"status": {"phase": phase}}
                )
        # the streams' own watch has seen the last change: the mirror's has had it as long
        feed = services.live.feed
        last = names[-1]
        assert wait_until(
            lambda: any(
                v["id"] == last and v["phase"] == "Terminated" for v in list(feed.views.values())
            ),
            30,
        )
    finally:
        facade.loop.call_soon_threadsafe(writing.release)
    events = len(names) * (1 + len(steps))

    def rows() -> dict[str, Any]:
        with psycopg.connect(database) as conn:
            found = conn.execute(
                "SELECT id, phase FROM sessions WHERE namespace = %s", (namespace,)
            ).fetchall()
        return dict(found)

    assert wait_until(lambda: rows() == dict.fromkeys(names, "Terminated"), 30), rows()
    count, total = batches(facade)
    assert total - before[1] == events, "every event written once"
    print(f"{events} watch events written in {count - before[0]:.0f} transactions")
    assert count - before[0] < events, "events that waited together were written together"
    expected = ["session.created", "session.started", "session.hibernated", "session.woken",
                "session.stopped"]  # fmt: skip

    def complete() -> bool:
        got = receiver.events()
        return all([g.type for g in got if g.subject == f"sessions/{n}"] == expected for n in names)

    assert wait_until(complete, 60), [(g.subject, g.type) for g in receiver.events()]
