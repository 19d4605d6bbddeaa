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
from streamspace_dev.cluster import ControlPlane
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (.*)$")


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
        follower = WebSocket(logs, token=token("alice")).open()
        operator = WebSocket(logs + "?tailLines=1", token=token("ops", "operator")).open()
        try:
            lines = [follower.next().data, follower.next().data]
            assert [STAMPED.match(line).group(1) for line in lines] == [  # type: ignore[union-attr]
                "starting",
                "listening on 3000",
            ]
            assert operator.next().data.endswith(" listening on 3000"), "tailLines=1"
            scraped = metric_values(stack.url)
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
