"""Both ``/metrics`` endpoints, scraped from the real operator and facade while they work.

Every family must exist, and move when the product does: a session created over REST and
Running shows in ``streamspace_sessions``, requests are timed by route template, a badly signed
webhook counts as ``unauthorized``, a repository sync is timed, the mirror reports its writes,
a hibernation and a wake on connect are counted with their reasons, each process counts its
own requests to the Kubernetes API (the operator's Kopf ones apart) and its live asyncio tasks. The registries live as
long as the test process, so the checks compare before and after, never absolute counts.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from facade_testing import Client
from gitfixtures import PUBLIC_FORMAT, make_repo
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 60
SESSION_ROUTE = "/api/v1/sessions/{id}"

FACADE_FAMILIES = {
    "streamspace_http_request_duration_seconds",
    "streamspace_webhook_deliveries",
    "streamspace_mirror_event_seconds",
    "streamspace_mirror_events",
    "streamspace_mirror_resyncs",
    "streamspace_mirror_writer",
    "streamspace_mirror_lag_seconds",
    "streamspace_websocket_clients",
    "streamspace_websocket_dropped",
    "streamspace_websocket_messages",
    "streamspace_asyncio_tasks",
    "streamspace_kubernetes_requests",
    "process_cpu_seconds",
}
OPERATOR_FAMILIES = {
    "streamspace_sessions",
    "streamspace_reconcile_duration_seconds",
    "streamspace_reconcile_errors",
    "streamspace_hibernations",
    "streamspace_wakes",
    "streamspace_repository_sync_duration_seconds",
    "streamspace_repository_sync_failures",
    "streamspace_asyncio_tasks",
    "streamspace_kubernetes_requests",
    "process_cpu_seconds",
}


class Scrape:
    """One scrape of an endpoint: families by name, and sums of samples by name and labels."""

    def __init__(self, url: str) -> None:
        with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain")
            text = resp.read().decode()
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        """The sum of the samples named ``sample`` whose labels include ``labels``."""
        return sum(
            s.value
            for family in self.families.values()
            for s in family.samples
            if s.name == sample and labels.items() <= s.labels.items()
        )


def eventually(url: str, check: Callable[[Scrape], bool]) -> Scrape:
    """Scrape until ``check`` holds (with a deadline), and return that scrape."""
    last: list[Scrape] = []

    def holds() -> bool:
        last[:] = [Scrape(url)]
        return check(last[0])

    assert wait_until(holds, TIMEOUT), f"{url}: never held: {check.__doc__ or check}"
    return last[0]


@pytest.fixture
def objects(full_cluster: Any, api: client.ApiClient, stack: Any) -> Objects:
    objects = Objects(api, stack.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    return objects


def test_both_processes_expose_metrics_that_move(
    stack: Any, objects: Objects, tmp_path: Path
) -> None:
    facade, operator = stack.url + "/metrics", stack.operator.metrics_url
    before, op_before = Scrape(facade), Scrape(operator)
    assert set(before.families) >= FACADE_FAMILIES, sorted(before.families)
    assert set(op_before.families) >= OPERATOR_FAMILIES, sorted(op_before.families)
    assert "streamspace_sessions" not in before.families  # each process its own registry

    # a session over REST, Running, is counted by the operator; its page by route template
    alice = stack.client("alice")
    created = alice.post("/api/v1/sessions", {"template": "firefox"})
    assert created.status == 201, created
    sid = created.body["id"]
    objects.wait_phase(sid, "Running", TIMEOUT)
    running = eventually(operator, lambda s: s.value("streamspace_sessions", phase="Running") >= 1)
    assert running.value("streamspace_sessions") >= 1
    reconciles = {"kind": "Session", "handler": "session_changed"}
    assert running.value("streamspace_reconcile_duration_seconds_count", **reconciles) > 0
    assert alice.get(f"/api/v1/sessions/{sid}").status == 200
    assert alice.get("/api/v1/sessions/nobody-here").status == 404
    assert alice.get("/no/such/path").status == 404

    after = Scrape(facade)
    count = "streamspace_http_request_duration_seconds_count"
    for method, route, status in (
        ("GET", SESSION_ROUTE, "200"),
        ("GET", SESSION_ROUTE, "404"),  # an API error turned into its answer, counted as such
        ("POST", "/api/v1/sessions", "201"),
        ("GET", "unmatched", "404"),
    ):
        labels = {"method": method, "route": route, "status": status}
        assert after.value(count, **labels) > before.value(count, **labels), labels
    routes = {s.labels["route"] for s in after.families[count.removesuffix("_count")].samples}
    assert not [route for route in routes if sid in route or "nobody" in route], routes

    # each process counts its own Kubernetes API requests: the facade created the Session, the
    # operator's own client created its children and patched its status; Kopf's session opened
    # the watches (it writes nothing on sessions: decision 134)
    requests = "streamspace_kubernetes_requests_total"
    create = {"client": "streamspace", "method": "POST", "code": "201"}
    assert after.value(requests, **create) > before.value(requests, **create)
    labels = {"client": "streamspace"}
    assert running.value(requests, **labels) > op_before.value(requests, **labels), labels
    assert running.value(requests, client="kopf", method="GET") > 0
    assert after.value(requests, client="kopf") == 0  # the facade has no Kopf
    assert after.value("streamspace_asyncio_tasks") >= 1  # the scrape's own task, at least
    assert running.value("streamspace_asyncio_tasks") > 1  # Kopf's watchers, and more

    # the mirror wrote the session's events and is the writer, caught up
    assert after.value("streamspace_mirror_writer") == 1
    assert after.value("streamspace_mirror_events_total", table="sessions") > 0
    assert after.value("streamspace_mirror_event_seconds_count", table="sessions") > 0
    assert after.value("streamspace_mirror_resyncs_total", table="sessions") >= 1
    assert after.value("streamspace_mirror_lag_seconds") >= 0

    # a webhook delivery with a bad signature
    body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "x"}}).encode()
    bad = "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": bad}
    refused = Client(stack.url).post("/webhooks/repository/sync", raw=body, headers=headers)
    assert refused.status == 401, refused
    unauthorized = {"provider": "github", "result": "unauthorized"}
    total = "streamspace_webhook_deliveries_total"
    assert Scrape(facade).value(total, **unauthorized) == before.value(total, **unauthorized) + 1

    # a repository sync is timed
    synced = op_before.value("streamspace_repository_sync_duration_seconds_count", result="ok")
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    ops = stack.client("olivia", "operator")
    assert ops.post("/api/v1/repositories", {"name": "public", "url": git.url}).status == 201
    eventually(
        operator,
        lambda s: (
            s.value("streamspace_repository_sync_duration_seconds_count", result="ok") > synced
        ),
    )

    # hibernated by its user, woken by a connection: both counted with their reason
    manual = op_before.value("streamspace_hibernations_total", reason="manual")
    woken = op_before.value("streamspace_wakes_total", reason="connection")
    assert alice.patch(f"/api/v1/sessions/{sid}", {"state": "hibernated"}).status == 200
    objects.wait_phase(sid, "Hibernated", TIMEOUT)
    eventually(
        operator, lambda s: s.value("streamspace_hibernations_total", reason="manual") > manual
    )
    assert alice.get(f"/api/v1/sessions/{sid}/connect").status == 200
    objects.wait_phase(sid, "Running", TIMEOUT)
    eventually(operator, lambda s: s.value("streamspace_wakes_total", reason="connection") > woken)
