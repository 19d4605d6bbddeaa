"""Plugin events survive faults: a receiver down for 30 s, a facade SIGKILLed mid-delivery.

The operator and the facade run as real processes on a control plane and a PostgreSQL of this
module's own (``faults``). A plugin repository is synced, and an operator installs its webhook
plugin over REST (``POST /api/v1/plugins/install``, whose answer carries the signing secret)
with a loopback HTTPS receiver as its URL; the receiver verifies every Standard Webhooks
signature.
Sessions are created, hibernated and woken over REST; kwok runs their pods.

* Receiver down for 30 s while sessions change, then back: it gets every event, in order per
  session, and none twice (a refused connection is never an event the receiver processed).
* Facade SIGKILLed while the receiver holds a delivery unanswered: after the restart and the
  lease, the delivery goes again with the same ``webhook-id``. That is the at-least-once window:
  a receiver that processed a request whose answer never reached the facade gets it again, and
  deduplicates by ``webhook-id`` (docs/PLUGINS.md §4).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from facade_testing import Client, token
from faults import Faults, Product, facade_url
from gitfixtures import make_repo
from pluginfixtures import WEBHOOK, plugin_repository
from receivers import Got, Receiver, tls
from streamspace_dev.process import wait_until
from streamspace_testing import Objects, close_pools

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

OUTAGE = 30.0  # seconds the receiver is down: the scenario itself, not a wait for something
SETTLE = 240.0
PLACEHOLDER = "https://hooks.example.com/streamspace"  # the URL given at install, replaced
SESSIONS = 4
EXPECTED = ["session.created", "session.started", "session.hibernated", "session.woken"]
EVENTS_ENV = {
    "EVENT_RETRY_BASE": "500ms",
    "EVENT_RETRY_CAP": "4s",
    "EVENT_RETRY_BUDGET": "100",
    "EVENT_POLL_INTERVAL": "500ms",
    "EVENT_DELIVERY_TIMEOUT": "5s",
    "EVENT_DELIVERY_LEASE": "8s",
}


@dataclass
class EventStack:
    namespace: str
    operator: Product
    facade: Product
    receiver: Receiver
    objects: Objects

    @property
    def url(self) -> str:
        return facade_url(self.facade)


@pytest.fixture
def events_stack(faults: Faults, tmp_path: Path) -> Iterator[EventStack]:
    namespace, database = faults.new_namespace(), faults.new_database()
    faults.migrate(database)
    context, ca_file = tls(tmp_path)
    receiver = Receiver("", ca_file).start(context)
    operator = faults.operator(namespace, database, RECONCILE_INTERVAL="2s")
    facade = faults.facade(namespace, database, EVENT_CA_BUNDLE=str(ca_file), **EVENTS_ENV)
    api = faults.api_client()
    try:
        operator.start()
        facade.start()
        objects = Objects(api, namespace)
        git = make_repo(tmp_path / "plugins", plugin_repository(WEBHOOK))
        objects.create("templaterepositories", "plugins", {"url": git.url, "type": "plugin"})
        # as an operator does it: the catalog over REST, an install with the receiver's URL;
        # the answer carries the signing secret, once
        ops = Client(facade_url(facade), token("olga", "operator"))

        def entry() -> int | None:
            found = ops.get("/api/v1/plugins/catalog?q=audit-hook").body or {}
            return next((p["id"] for p in found.get("plugins", [])), None)

        assert wait_until(lambda: entry() is not None, SETTLE)
        installed = ops.post(
            "/api/v1/plugins/install",
            {"pluginId": entry(), "config": {"url": PLACEHOLDER}, "name": "audit"},
        )
        assert installed.status == 201, installed
        receiver.secret = installed.body["signingSecret"]
        # then configured: the receiver's URL replaces the one given at install
        configured = ops.request(
            "PUT", "/api/v1/plugins/audit/config", {"config": {"url": receiver.url}}
        )
        assert configured.status == 200, configured

        def ready() -> bool:
            status = _plugin(objects).get("status") or {}
            return status.get("phase") == "Ready" and status.get("url") == receiver.url

        assert wait_until(ready, SETTLE), _plugin(objects)
        # subscribers are read from the mirror: wait until it shows the plugin Ready there too

        def mirrored() -> bool:
            shown = ops.get("/api/v1/plugins/audit").body or {}
            return shown.get("phase") == "Ready" and shown.get("url") == receiver.url

        assert wait_until(mirrored, 60)
        yield EventStack(namespace, operator, facade, receiver, objects)
    finally:
        faults.stop_products()
        receiver.stop()
        close_pools(api)
        api.close()


def _plugin(objects: Objects) -> dict[str, Any]:
    return objects.get("plugins", "audit") or {}


def _phase(objects: Objects) -> str | None:
    return (_plugin(objects).get("status") or {}).get("phase")


def of(got: list[Got], subject: str) -> list[str]:
    return [g.type for g in got if g.subject == subject]


def sessions_reach(stack: EventStack, names: list[str], phase: str) -> None:
    def there() -> bool:
        return all(stack.objects.status(n).get("phase") == phase for n in names)

    assert wait_until(there, SETTLE), {n: stack.objects.status(n).get("phase") for n in names}


def set_state(stack: EventStack, names: list[str], state: str) -> None:
    alice = Client(stack.url, token("alice"))
    for name in names:
        answer = alice.patch(f"/api/v1/sessions/{name}", {"state": state})
        assert answer.status == 200, answer


def create_sessions(stack: EventStack, count: int) -> list[str]:
    alice = Client(stack.url, token("alice"))
    names = []
    for _ in range(count):
        answer = alice.post("/api/v1/sessions", {"template": "firefox"})
        assert answer.status == 201, answer
        names.append(answer.body["id"])
    return names


def deliveries(stack: EventStack) -> list[dict[str, Any]]:
    answer = Client(stack.url, token("root", "admin")).get(
        "/api/v1/plugins/audit/deliveries?limit=200"
    )
    assert answer.status == 200, answer
    return list(answer.body["deliveries"])


def test_receiver_down_for_30s_then_back_gets_every_event_in_order(
    events_stack: EventStack,
) -> None:
    stack, receiver = events_stack, events_stack.receiver
    names = create_sessions(stack, SESSIONS)
    sessions_reach(stack, names, "Running")
    assert wait_until(lambda: len(receiver.events()) >= 2 * SESSIONS, SETTLE)

    receiver.down()
    down_at = time.monotonic()
    set_state(stack, names, "hibernated")
    sessions_reach(stack, names, "Hibernated")
    set_state(stack, names, "running")
    sessions_reach(stack, names, "Running")

    def outage_over() -> bool:
        failed = any(d["attempts"] >= 2 and d["status"] == "pending" for d in deliveries(stack))
        return failed and time.monotonic() - down_at >= OUTAGE

    assert wait_until(outage_over, SETTLE, interval=1.0)
    assert not any(of(receiver.events(), f"sessions/{n}")[2:] for n in names), (
        "nothing arrives while the receiver is down"
    )
    receiver.up()
    print(f"\nreceiver was down {time.monotonic() - down_at:.1f}s")

    def complete() -> bool:
        return all(of(receiver.events(), f"sessions/{n}") == EXPECTED for n in names)

    assert wait_until(complete, SETTLE), {n: of(receiver.events(), f"sessions/{n}") for n in names}
    got = receiver.events()
    assert receiver.refused == []
    assert len({g.delivery_id for g in got}) == len(got), "an event arrived twice"
    assert len({g.event["id"] for g in got}) == len(got)
    log = deliveries(stack)
    assert {d["status"] for d in log} == {"delivered"}
    assert max(d["attempts"] for d in log) >= 2


def test_facade_killed_mid_delivery_redelivers_after_restart(events_stack: EventStack) -> None:
    stack, receiver = events_stack, events_stack.receiver
    receiver.hold()
    [name] = create_sessions(stack, 1)

    def posted() -> bool:  # claimed (attempt 1 counted) and at the receiver, unanswered
        claimed = [d for d in deliveries(stack) if d["type"] == "session.created"]
        return bool(claimed) and claimed[0]["attempts"] == 1 and receiver.requests >= 1

    assert wait_until(posted, SETTLE)
    stack.facade.kill()
    receiver.release()  # processed now, but its answer goes to a dead connection
    stack.facade.start()
    sessions_reach(stack, [name], "Running")

    def complete() -> bool:
        return of(receiver.events(), f"sessions/{name}")[-2:] == EXPECTED[:2]

    assert wait_until(complete, SETTLE), of(receiver.events(), f"sessions/{name}")
    got = receiver.events()
    first: dict[str, Got] = {}
    for g in got:  # what a receiver that deduplicates by webhook-id keeps
        first.setdefault(g.delivery_id, g)
    assert [g.type for g in first.values() if g.subject == f"sessions/{name}"] == EXPECTED[:2]
    created = next(d for d in deliveries(stack) if d["type"] == "session.created")
    assert created["status"] == "delivered"
    assert created["attempts"] == 2, created  # the attempt cut by the kill, and the one after
    mine = [g for g in got if g.subject == f"sessions/{name}"]
    duplicates = len(mine) - len({g.delivery_id for g in mine})
    print(f"\nredelivered after the kill; duplicates the receiver saw: {duplicates}")
    assert duplicates <= 1  # at most the one held when the facade died
    assert receiver.refused == []
