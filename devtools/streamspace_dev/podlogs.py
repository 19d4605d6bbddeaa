"""Pod logs on the full profile's kwok nodes: a file per container that kwok serves as its logs.

kwok v0.8.0 plays the kubelet's ``/containerLogs/<ns>/<pod>/<container>`` endpoint from files
named by ``Logs`` objects (``kwok.x-k8s.io/v1alpha1``, one per pod, same name and namespace;
``logsFile`` is a fixed path, no template), read with the kubelet's own CRI log reader. So a test
that wants a pod to "print" registers the pod's container once — a file under the control
plane's directory and a ``Logs`` entry naming it — and appends lines to the file in the CRI log
format (``<RFC3339Nano> stdout F <text>``). The API server's ``pods/log`` proxies to kwok like to
a kubelet, so ``kubectl logs -f --timestamps`` shows the lines and follows appended ones.
"""

from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from streamspace.cli import CommandError
from streamspace_dev import process

GROUP = "kwok.x-k8s.io"
VERSION = "v1alpha1"
PLURAL = "logs"
STREAMS = ("stdout", "stderr")


class PodLogError(CommandError):
    """kwok did not start serving a registered log file in time."""


def log_path(root: Path, namespace: str, pod: str, container: str) -> Path:
    """Where the logs of ``container`` in ``namespace/pod`` live under ``root``."""
    return root / namespace / pod / f"{container}.log"


def cri_lines(lines: Iterable[str], stream: str = "stdout", at: dt.datetime | None = None) -> str:
    """``lines`` as records of the CRI log format, one per line of text, stamped ``at`` (UTC)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, not {stream!r}")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "".join(f"{stamp} {stream} F {text}\n" for line in lines for text in line.split("\n"))


def served(port: int, namespace: str, pod: str, container: str) -> bool:
    """Whether kwok's kubelet endpoint on ``port`` answers for the container's logs."""
    path = "/".join(urllib.parse.quote(part, safe="") for part in (namespace, pod, container))
    # kwok serves plain HTTP beside HTTPS on the same port; it does not authenticate callers.
    url = f"http://127.0.0.1:{port}/containerLogs/{path}?limitBytes=1"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def with_entry(logs: list[dict[str, Any]], entry: dict[str, Any]) -> list[dict[str, Any]]:
    """``logs`` (a ``Logs`` spec's list) with ``entry`` the only one naming its container."""
    container = entry["containers"][0]
    kept = []
    for e in logs:
        names = e.get("containers") or []
        if container not in names:
            kept.append(e)  # default entries (no containers) included
        elif len(names) > 1:
            kept.append({**e, "containers": [c for c in names if c != container]})
    return [*kept, entry]


def register(kubeconfig: Path, namespace: str, pod: str, container: str, file: Path) -> None:
    """Make the pod's ``Logs`` object name ``file`` for ``container``; idempotent."""
    from kubernetes import client, config  # noqa: PLC0415 - heavy import, dev paths only
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

    # kwok v0.8.0 follows (or not) by the request's ``follow`` parameter; ``follow`` here is
    # recorded for readers and for kwok versions that honour it.
    entry = {"containers": [container], "logsFile": str(file), "follow": True}
    api_client = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    with api_client:
        api = client.CustomObjectsApi(api_client)
        while True:  # until a write is not a lost race (409)
            current: dict[str, Any] | None
            try:
                current = cast(
                    "dict[str, Any]",
                    api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, pod),
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise
                current = None
            try:
                if current is None:
                    body = {
                        "apiVersion": f"{GROUP}/{VERSION}",
                        "kind": "Logs",
                        "metadata": {"name": pod, "namespace": namespace},
                        "spec": {"logs": [entry]},
                    }
                    api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                else:
                    logs = current["spec"].get("logs") or []
                    if entry in logs:
                        return
                    current["spec"]["logs"] = with_entry(logs, entry)
                    api.replace_namespaced_custom_object(
                        GROUP, VERSION, namespace, PLURAL, pod, current
                    )
            except ApiException as exc:
                if exc.status != 409:
                    raise
                continue
            return


def ensure(
    kubeconfig: Path,
    port: int,
    file: Path,
    *,
    namespace: str,
    pod: str,
    container: str,
    timeout: float = 30.0,
) -> None:
    """Create ``file`` if missing and return once kwok on ``port`` serves it for the container."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.touch(exist_ok=True)
    if served(port, namespace, pod, container):
        return
    register(kubeconfig, namespace, pod, container, file)
    # kwok learns of the Logs object through a watch, a moment after it is written.
    if not process.wait_until(lambda: served(port, namespace, pod, container), timeout):
        raise PodLogError(
            f"kwok (port {port}) did not serve the logs of {namespace}/{pod}/{container} "
            f"from {file} within {timeout:.0f}s"
        )
