"""The streams on the full profile: a session's life as its owner watches it, and its pod's log.

kwok plays the kubelet, so a session pod prints nothing by itself; ``ControlPlane.write_pod_log``
makes its container "print", and the API server serves ``pods/log`` from kwok exactly as it
would from a kubelet. The facade follows that through the real API server.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from facade_testing import Client, WebSocket, token
from streamspace.manifests import MANAGED_BY, SESSION_LABEL, USER_LABEL
from streamspace_dev.cluster import ControlPlane
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (.*)$")
FOLLOWS_OPENED = ("streamspace_log_follows_opened_total", ())
FOLLOWS_OPEN = ("streamspace_log_follows", ())
UPGRADE = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
}


def metric_values(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = Client(base).get("/metrics").body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def session_in(sid: str, phase: str) -> Any:
    def match(data: Any) -> bool:
        return any(s["id"] == sid and s["phase"] == phase for s in data.get("sessions", []))

    return match


def test_a_session_streamed_from_create_to_delete_with_its_log(
    full_cluster: Any, stack: Any, api: client.ApiClient
) -> None:
    plane: ControlPlane | None = full_cluster.plane
    assert plane is not None, "this test plays pod logs with the local control plane's kwok"
    Objects(api, stack.namespace).create("templates", "firefox", TEMPLATE)
    alice_rest = stack.client("alice")
    sessions = WebSocket(stack.url + "/api/v1/ws/sessions", token=token("alice")).open()
    try:
        sessions.next()
        sid = alice_rest.post("/api/v1/sessions", {"template": "firefox"}).body["id"]
        sessions.next(session_in(sid, "Pending"), timeout=30)
        running = sessions.next(session_in(sid, "Running"), timeout=60)
        view = next(s for s in running.data["sessions"] if s["id"] == sid)
        pod = view["podName"]
        assert pod, view

        logs = f"{stack.url}/api/v1/ws/logs/{stack.namespace}/{pod}"
        # kwok has no log for the container yet: an HTTP answer, not a stream that stays silent
        with pytest.raises(aiohttp.WSServerHandshakeError) as early:
            WebSocket(logs, token=token("alice")).open()
        assert early.value.status == 409
        container = client.CoreV1Api(api).read_namespaced_pod(pod, stack.namespace)
        name = container.spec.containers[0].name
        plane.write_pod_log(stack.namespace, pod, name, "starting", "listening on 3000")

        # another user cannot tell the pod exists; an operator reads any pod
        with pytest.raises(aiohttp.WSServerHandshakeError) as hidden:
            WebSocket(logs, token=token("bob")).open()
        assert hidden.value.status == 404
        opened = metric_values(stack.url).get(FOLLOWS_OPENED, 0.0)
        follower = WebSocket(logs, token=token("alice")).open()
        operator = None
        try:
            lines = [follower.next().data, follower.next().data]
            assert [STAMPED.match(line).group(1) for line in lines] == [  # type: ignore[union-attr]
                "starting",
                "listening on 3000",
            ]
            # the operator joins alice's follow, starting with the last line of its history
            operator = WebSocket(logs + "?tailLines=1", token=token("ops", "operator")).open()
            assert operator.next().data.endswith(" listening on 3000"), "tailLines=1"
            scraped = metric_values(stack.url)
            assert scraped[FOLLOWS_OPENED] == opened + 1, "two subscribers, one upstream follow"
            assert scraped[("streamspace_websocket_clients", (("stream", "logs"),))] >= 2
            assert scraped[("streamspace_websocket_clients", (("stream", "sessions"),))] >= 1
            lines_sent = (("stream", "logs"), ("type", "line"))
            assert scraped[("streamspace_websocket_messages_total", lines_sent)] >= 3
            plane.write_pod_log(stack.namespace, pod, name, "a request")
            assert follower.next().data.endswith(" a request")
            assert operator.next().data.endswith(" a request")

            # deleting the session removes its pod: the log streams end normally and say why
            assert alice_rest.delete(f"/api/v1/sessions/{sid}").status == 204
            sessions.next(lambda d: sid not in {s["id"] for s in d["sessions"]}, timeout=30)
            for ws in (follower, operator):
                assert ws.closed.wait(60), "the log stream outlived its pod"
                assert ws.close_code == 1000
                assert ws.close_reason == "pod deleted"
        finally:
            follower.close()
            if operator is not None:
                operator.close()
    finally:
        sessions.close()


def test_an_idle_session_is_warned_about_then_hibernated(
    full_cluster: Any,
    api: client.ApiClient,
    database: str,
    start_operator: Any,
    start_facade: Any,
) -> None:
    """The operator's idle deadline, the facade's warning before it, then the hibernation."""
    fast = {"IDLE_CHECK_INTERVAL": "1s", "HIBERNATE_WARNING": "6s"}
    start_operator(DATABASE_URL=database, **fast)
    facade = start_facade(DATABASE_URL=database, **fast)
    objects = Objects(api, facade.settings.kubernetes.namespace)
    objects.create("templates", "firefox", TEMPLATE)
    alice = WebSocket(facade.url + "/api/v1/ws/sessions", token=token("alice")).open()
    try:
        alice.next()
        objects.create(
            "sessions", "alice-idle", {"user": "alice", "template": "firefox", "idleTimeout": "15s"}
        )
        running = alice.next(session_in("alice-idle", "Running"), timeout=60)
        warning = alice.next(lambda d: d["type"] == "hibernate_warning", timeout=60)
        assert warning.data["sessionId"] == "alice-idle"
        assert 0 < warning.data["secondsRemaining"] <= 6
        hibernated = alice.next(session_in("alice-idle", "Hibernated"), timeout=60)
        assert running.at < warning.at < hibernated.at
        view = next(s for s in hibernated.data["sessions"] if s["id"] == "alice-idle")
        assert view["state"] == "hibernated" and view["idleDeadline"] is None
    finally:
        alice.close()


def session_pod(core: client.CoreV1Api, namespace: str, session: str, user: str) -> str:
    """A pod labelled as a session's (as the operator labels them), running on a kwok node."""
    name = f"{session}-0"
    labels = {**MANAGED_BY, SESSION_LABEL: session, USER_LABEL: user}
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "app", "image": "example/app"}]},
        },
    )

    def running() -> bool:
        return core.read_namespaced_pod(name, namespace).status.phase == "Running"

    assert wait_until(running, 60), core.read_namespaced_pod(name, namespace)
    return name


def test_attack_log_streams_cannot_starve_the_kubernetes_client(
    full_cluster: Any,
    api: client.ApiClient,
    namespace: str,
    start_facade: Any,
) -> None:
    """Subscribers of one pod share one upstream follow; distinct follows are capped (429),
    and REST keeps answering meanwhile."""
    plane: ControlPlane | None = full_cluster.plane
    assert plane is not None, "this test plays pod logs with the local control plane's kwok"
    facade = start_facade(WS_MAX_LOG_FOLLOWS="1")
    core = client.CoreV1Api(api)
    alices = session_pod(core, namespace, "alice-firefox-1", "alice")
    bobs = session_pod(core, namespace, "bob-firefox-1", "bob")
    for pod in (alices, bobs):
        plane.write_pod_log(namespace, pod, "app", f"{pod} started")
    logs = f"{facade.url}/api/v1/ws/logs/{namespace}/"
    before = metric_values(facade.url)

    subscribers = [
        WebSocket(logs + alices, token=token("alice")).open(),
        WebSocket(logs + alices, token=token("alice")).open(),
        WebSocket(logs + alices, token=token("ops", "operator")).open(),
    ]
    try:
        for ws in subscribers:
            assert ws.next().data.endswith(f" {alices} started")
        scraped = metric_values(facade.url)
        assert scraped[FOLLOWS_OPENED] == before.get(FOLLOWS_OPENED, 0.0) + 1
        assert scraped[FOLLOWS_OPEN] == before.get(FOLLOWS_OPEN, 0.0) + 1

        # bob's pod would need a second follow: refused before the upgrade, naming the limit
        refused = Client(facade.url, token("bob")).get(
            f"/api/v1/ws/logs/{namespace}/{bobs}", headers=UPGRADE
        )
        assert refused.status == 429, refused
        assert refused.body["code"] == "TOO_MANY_STREAMS"
        assert refused.body["details"] == {"limit": "WS_MAX_LOG_FOLLOWS", "max": 1}
        # REST and the other streams are unaffected
        ops = Client(facade.url, token("ops", "operator"))
        assert ops.get("/api/v1/templates").status == 200
        with WebSocket(facade.url + "/api/v1/ws/sessions", token=token("bob")) as sessions:
            assert sessions.next().data["type"] == "sessions_update"

        plane.write_pod_log(namespace, alices, "app", "one line, three readers")
        for ws in subscribers:
            assert ws.next().data.endswith(" one line, three readers")
    finally:
        for ws in subscribers:
            ws.close()

    # the last subscriber gone, the follow is closed and its slot free for bob's pod
    def bobs_log() -> bool:
        return metric_values(facade.url)[FOLLOWS_OPEN] == before.get(FOLLOWS_OPEN, 0.0)

    assert wait_until(bobs_log, 30)
    with WebSocket(logs + bobs, token=token("bob")) as bob:
        assert bob.next().data.endswith(f" {bobs} started")
