"""Pod logs on the full profile: ``pods/log`` through the API server, served by kwok from files.

A test makes a container "print" with ``ControlPlane.write_pod_log``; the API server proxies
``read_namespaced_pod_log`` (``kubectl logs -f --timestamps``) to kwok's kubelet endpoint on the
pod's node, which reads the file like a kubelet reads a CRI log.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace_dev.cluster import ControlPlane
from streamspace_dev.objects import FAKE_NODES
from streamspace_dev.process import wait_until

pytestmark = pytest.mark.e2e

# What the kubelet's log reader (and so kwok) puts before each line when timestamps=true:
# RFC 3339 in UTC with nanoseconds.
STAMPED = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z (.*)$")
WAIT = 20.0


class Follower:
    """Reads a followed log in a thread, a line at a time; ``END`` once the stream ends."""

    END = "<end of stream>"

    def __init__(self, response: Any) -> None:
        self.response = response
        self.lines: queue.Queue[str | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._read, name="log-follower", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.response:
                self.lines.put(raw.decode().rstrip("\n"))
            self.lines.put(self.END)
        except BaseException as exc:  # handed to the test by next()
            self.lines.put(exc)

    def next(self, timeout: float = WAIT) -> str:
        """The next line (or ``END``) within ``timeout`` seconds; raises what the reader met."""
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no log line within {timeout:.0f}s") from None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.response.shutdown()  # wakes the reader blocked in recv()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the log reader did not stop"
        # a stream left mid-way cannot go back to the pool: close it and its connection (the
        # pool's own close leaves the socket open while this response still reads from it)
        self.response.close()


@pytest.fixture
def plane(full_cluster: Any) -> ControlPlane:
    if full_cluster.plane is None:
        pytest.skip("pod logs are played by the local control plane's kwok")
    plane: ControlPlane = full_cluster.plane
    return plane


def running_pod(core: client.CoreV1Api, namespace: str, *containers: str) -> str:
    """Create a pod with ``containers``; return its name once it runs on a kwok node."""
    name = f"printer-{uuid.uuid4().hex[:6]}"
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {"containers": [{"name": c, "image": "example/printer"} for c in containers]},
        },
    )

    def running() -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        return pod.spec.node_name in FAKE_NODES and pod.status.phase == "Running"

    assert wait_until(running, 60), core.read_namespaced_pod(name, namespace)
    return name


def parse(line: str) -> tuple[dt.datetime, str]:
    """A timestamped log line as (time to the microsecond, text)."""
    match = STAMPED.match(line)
    assert match, f"not an RFC 3339 timestamped line: {line!r}"
    seconds, fraction, text = match.groups()
    when = dt.datetime.fromisoformat(f"{seconds}.{fraction[:6]}+00:00")
    return when, text


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def follow(core: client.CoreV1Api) -> Iterator[Callable[[str, str, str], Follower]]:
    """Open followed, timestamped logs of a container; every follower is closed afterwards."""
    followers: list[Follower] = []

    def open_(namespace: str, pod: str, container: str) -> Follower:
        response = core.read_namespaced_pod_log(
            pod,
            namespace,
            container=container,
            follow=True,
            timestamps=True,
            _preload_content=False,
        )
        followers.append(Follower(response))
        return followers[-1]

    yield open_
    for follower in followers:
        follower.close()


def test_followed_logs_carry_timestamps_and_appended_lines(
    plane: ControlPlane,
    core: client.CoreV1Api,
    namespace: str,
    follow: Callable[[str, str, str], Follower],
) -> None:
    pod = running_pod(core, namespace, "app")
    at = dt.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=dt.UTC)
    path = plane.write_pod_log(namespace, pod, "app", "first line", "second line", at=at)
    assert path == plane.pod_logs_dir / namespace / pod / "app.log"

    logs = follow(namespace, pod, "app")
    assert [parse(logs.next()) for _ in range(2)] == [(at, "first line"), (at, "second line")]

    # Lines appended while following arrive, stderr interleaved like a kubelet does.
    before = dt.datetime.now(dt.UTC)
    plane.write_pod_log(namespace, pod, "app", "third line")
    when, text = parse(logs.next())
    assert text == "third line"
    assert when >= before - dt.timedelta(milliseconds=1)
    plane.write_pod_log(namespace, pod, "app", "oops", stream="stderr")
    assert parse(logs.next())[1] == "oops"

    # Deleting the pod does not end the stream: kwok cannot tell that the "container" stopped
    # (it has no container runtime), so it keeps following the file until the client hangs up,
    # and lines written after the pod is gone still arrive. New requests get 404.
    core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(pod, namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    assert wait_until(gone, 60)
    plane.write_pod_log(namespace, pod, "app", "after deletion")
    assert parse(logs.next())[1] == "after deletion"
    with pytest.raises(ApiException) as raised:
        core.read_namespaced_pod_log(pod, namespace, container="app")
    assert raised.value.status == 404


def test_each_container_has_its_own_log(
    plane: ControlPlane, core: client.CoreV1Api, namespace: str
) -> None:
    pod = running_pod(core, namespace, "app", "sidecar")
    plane.write_pod_log(namespace, pod, "app", "from app")
    plane.write_pod_log(namespace, pod, "sidecar", "from sidecar", "again")

    assert core.read_namespaced_pod_log(pod, namespace, container="app") == "from app\n"
    assert core.read_namespaced_pod_log(pod, namespace, container="sidecar") == (
        "from sidecar\nagain\n"
    )
    assert plane.pod_log(namespace, pod, "app").read_text().endswith(" stdout F from app\n")
