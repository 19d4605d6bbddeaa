"""Plugin events end to end against real parts: the facade's mirror (real kube-apiserver and
PostgreSQL) derives events, its delivery worker posts them to a loopback HTTPS receiver that
verifies every Standard Webhooks signature; retries, dead deliveries, the delivery log and
redelivery over REST, a resync after the facade was away, a Secret not owned by its Plugin.

Session phases are written here with the status subresource, as the operator writes them, so
that every transition is exercised without waiting for pods.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import Client, FacadeThread, token
from receivers import Got, Receiver, install_plugin, new_secret, tls
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

FAST = {
    "EVENT_RETRY_BASE": "100ms",
    "EVENT_RETRY_CAP": "400ms",
    "EVENT_RETRY_BUDGET": "3",
    "EVENT_POLL_INTERVAL": "200ms",
    "EVENT_DELIVERY_TIMEOUT": "2s",
    "EVENT_DELIVERY_LEASE": "4s",
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    context, ca_file = tls(tmp_path)
    got = Receiver(new_secret(), ca_file).start(context)
    yield got
    got.stop()


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


@pytest.fixture
def facade(
    start_facade: Callable[..., FacadeThread], database: str, receiver: Receiver
) -> Callable[..., FacadeThread]:
    def start(**env: str) -> FacadeThread:
        settings = {**FAST, **env}
        started = start_facade(
            DATABASE_URL=database, EVENT_CA_BUNDLE=str(receiver.ca_file), **settings
        )
        assert started.app is not None
        mirror = started.app[SERVICES].mirror
        assert wait_until(mirror.ready.is_set, timeout=60), "the mirror did not become ready"
        return started

    return start


def plugin_ready(database: str, name: str) -> bool:
    with psycopg.connect(database) as conn:
        row = conn.execute("SELECT phase FROM installed_plugins WHERE id = %s", (name,)).fetchone()
    return row is not None and row[0] == "Ready"


def set_phase(objects: Objects, name: str, phase: str) -> None:
    objects.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, objects.ns, "sessions", name, {"status": {"phase": phase}}
    )


def of(got: list[Got], subject: str) -> list[str]:
    return [g.type for g in got if g.subject == subject]


def session(user: str) -> dict[str, Any]:
    return {"user": user, "template": "firefox", "state": "running"}


def test_signed_events_arrive_in_order_per_session(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    url = facade().url
    install_plugin(api, objects.ns, "audit", receiver.url, receiver.secret)
    assert wait_until(lambda: plugin_ready(database, "audit"), 30)
    steps = ["Pending", "Running", "Hibernated", "Running", "Terminated"]
    expected = ["session.created", "session.started", "session.hibernated", "session.woken",
                "session.stopped", "session.deleted"]  # fmt: skip
    names = [f"alice-ev-{i}" for i in range(3)]
    for name in names:
        objects.create("sessions", name, session("alice"))
    for phase in steps:  # interleaved: each session's order is its own
        for name in names:
            set_phase(objects, name, phase)
    for name in names:
        objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "sessions", name)

    def complete() -> bool:
        return all(of(receiver.events(), f"sessions/{n}") == expected for n in names)

    assert wait_until(complete, 60), {n: of(receiver.events(), f"sessions/{n}") for n in names}
    assert receiver.refused == []
    got = receiver.events()
    first = got[0].event
    assert first["source"] == f"/streamspace/{objects.ns}"
    assert first["specversion"] == "1.0"
    assert first["datacontenttype"] == "application/json"
    created = next(g for g in got if g.type == "session.created")
    assert created.event["data"]["user"] == "alice"  # the row as the REST API shows it
    assert len({g.delivery_id for g in got}) == len(got) == 3 * len(expected)

    # users may not read it: subjects name other users' sessions
    assert Client(url, token("bob")).get("/api/v1/plugins/audit/deliveries").status == 403
    olga = Client(url, token("olga", "operator"))
    log = olga.get("/api/v1/plugins/audit/deliveries?limit=100")
    assert log.status == 200, log
    assert log.body["total"] == 3 * len(expected)
    assert {d["status"] for d in log.body["deliveries"]} == {"delivered"}
    assert all(d["attempts"] == 1 and d["latencyMs"] >= 0 for d in log.body["deliveries"])
    assert olga.get("/api/v1/plugins/nobody/deliveries").status == 404
    bad = olga.get("/api/v1/plugins/audit/deliveries?status=lost")
    assert bad.status == 422


def test_dead_delivery_is_redelivered_from_the_api(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    url = facade().url
    install_plugin(api, objects.ns, "hook", receiver.url, receiver.secret)
    assert wait_until(lambda: plugin_ready(database, "hook"), 30)
    receiver.status = 503
    objects.create("sessions", "alice-dead", session("alice"))
    set_phase(objects, "alice-dead", "Running")
    admin = Client(url, token("root", "admin"))

    def deliveries() -> list[dict[str, Any]]:
        answer = admin.get("/api/v1/plugins/hook/deliveries")
        assert answer.status == 200, answer
        return list(answer.body["deliveries"])

    # both die: the started one waited behind created, then had its own budget
    assert wait_until(lambda: [d["status"] for d in deliveries()] == ["dead", "dead"], 60), (
        deliveries()
    )
    started, created = deliveries()
    assert created["type"] == "session.created"
    assert created["attempts"] == 3
    assert created["lastStatus"] == 503
    assert created["lastError"] == "HTTP 503"
    assert receiver.events() == []

    receiver.status = 204
    path = f"/api/v1/plugins/hook/deliveries/{created['id']}/redeliver"
    assert Client(url, token("alice", "operator")).post(path).status == 403
    again = admin.post(path)
    assert again.status == 202, again
    assert again.body["status"] == "pending"
    assert wait_until(lambda: [g.type for g in receiver.events()] == ["session.created"], 30)
    assert receiver.events()[0].delivery_id == created["id"]  # webhook-id is stable
    assert admin.post(path).status == 409  # delivered now: nothing to redeliver
    unknown = "/api/v1/plugins/hook/deliveries/3f0c1c52-0d6c-4a37-8bb9-1ac1b9a39a85/redeliver"
    assert admin.post(unknown).status == 404
    assert admin.post("/api/v1/plugins/hook/deliveries/nope/redeliver").status == 404
    assert admin.post(f"/api/v1/plugins/hook/deliveries/{started['id']}/redeliver").status == 202
    assert wait_until(lambda: len(receiver.events()) == 2, 30)
    assert [g.type for g in receiver.events()] == ["session.created", "session.started"]


def test_changes_made_while_no_facade_ran_are_announced(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    first = facade()
    install_plugin(api, objects.ns, "late", receiver.url, receiver.secret)
    assert wait_until(lambda: plugin_ready(database, "late"), 30)
    objects.create("sessions", "alice-before", session("alice"))
    assert wait_until(lambda: len(receiver.events()) == 1, 30)
    first.stop()
    # while no facade runs: one session goes, another is created and started
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "sessions", "alice-before"
    )
    objects.create("sessions", "alice-meanwhile", session("alice"))
    set_phase(objects, "alice-meanwhile", "Running")
    facade()
    assert wait_until(lambda: len(receiver.events()) == 4, 60), receiver.events()
    got = receiver.events()
    assert of(got, "sessions/alice-before") == ["session.created", "session.deleted"]
    assert of(got, "sessions/alice-meanwhile") == ["session.created", "session.started"]


def test_a_secret_not_owned_by_the_plugin_is_never_used(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    url = facade().url
    install_plugin(api, objects.ns, "owned", receiver.url, receiver.secret)
    assert wait_until(lambda: plugin_ready(database, "owned"), 30)
    # someone replaces the Secret with one of their own (no owner reference)
    core = client.CoreV1Api(api)
    core.delete_namespaced_secret("plugin-owned", objects.ns)
    core.create_namespaced_secret(
        objects.ns,
        {"metadata": {"name": "plugin-owned"}, "stringData": {"signing-secret": new_secret()}},
    )
    objects.create("sessions", "alice-owned", session("alice"))
    admin = Client(url, token("root", "admin"))

    def dead() -> list[dict[str, Any]]:
        body = admin.get("/api/v1/plugins/owned/deliveries?status=dead").body
        return list(body["deliveries"])

    assert wait_until(lambda: len(dead()) == 1, 60)
    assert "not owned by this plugin" in dead()[0]["lastError"]
    assert dead()[0]["lastStatus"] is None
    assert receiver.requests == 0


def test_an_uninstalled_plugins_pending_deliveries_end_at_once(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    started = facade(EVENT_RETRY_BUDGET="1000")  # never dead by its budget here
    install_plugin(api, objects.ns, "brief", receiver.url, receiver.secret)
    assert wait_until(lambda: plugin_ready(database, "brief"), 30)
    receiver.status = 503  # the receiver fails: deliveries stay pending, retrying
    objects.create("sessions", "alice-brief", session("alice"))
    admin = Client(started.url, token("root", "admin"))

    def log() -> list[dict[str, Any]]:
        answer = admin.get("/api/v1/plugins/brief/deliveries")
        assert answer.status == 200, answer
        return list(answer.body["deliveries"])

    assert wait_until(lambda: any(d["attempts"] >= 1 for d in log()), 30), log()
    assert {d["status"] for d in log()} == {"pending"}
    objects.custom.delete_namespaced_custom_object(GROUP, VERSION, objects.ns, "plugins", "brief")
    # the log outlives the plugin, and says why nothing more will be tried
    assert wait_until(lambda: {d["status"] for d in log()} == {"dead"}, 30), log()
    assert {d["lastError"] for d in log()} == {"plugin uninstalled"}
    receiver.status = 204
    with psycopg.connect(database) as conn:
        pending = conn.execute(
            "SELECT count(*) FROM plugin_deliveries WHERE status = 'pending'"
        ).fetchone()
    assert pending == (0,)
    assert receiver.events() == []


def test_user_events_go_to_the_plugins_of_the_facades_namespace(
    facade: Callable[..., FacadeThread],
    receiver: Receiver,
    objects: Objects,
    api: client.ApiClient,
    database: str,
) -> None:
    url = facade().url
    install_plugin(api, objects.ns, "people", receiver.url, receiver.secret, events=("user.*",))
    assert wait_until(lambda: plugin_ready(database, "people"), 30)
    root = Client(url, token("root", "admin"))
    assert root.get("/api/v1/me").status == 200  # root: user.created
    signed_in = Client(url).post(
        "/api/v1/auth/session",
        {"token": token("alice", groups=["staff"])},
        headers={"X-Requested-With": "streamspace"},
    )
    assert signed_in.status == 200, signed_in
    assert root.patch("/api/v1/users/alice", {"groups": ["gpu"]}).status == 200
    assert root.delete("/api/v1/users/alice").status == 204
    expected = ["user.created", "user.login", "user.updated", "user.deleted"]
    assert wait_until(lambda: of(receiver.events(), "users/alice") == expected, 30), (
        receiver.events()
    )
    created = next(g for g in receiver.events() if g.subject == "users/alice")
    assert created.event["data"]["idpGroups"] == ["staff"]
    assert created.event["source"] == f"/streamspace/{objects.ns}"
    assert receiver.refused == []
