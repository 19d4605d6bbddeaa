"""Helpers shared by the e2e tests: typed access to our custom resources through the API."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace.naming import workload_name
from streamspace_dev.objects import ADMISSION_FILE
from streamspace_dev.objects import apply_admission as apply_policy
from streamspace_dev.process import wait_until

GROUP, VERSION = "stream.space", "v1alpha1"
TIMEOUT = 60
TEMPLATE = {
    "displayName": "Firefox",
    "baseImage": "lscr.io/linuxserver/firefox:latest",
    "kasmvnc": {"enabled": True, "port": 3000},
    "defaultResources": {"memory": "2Gi", "cpu": "1000m"},
}


@contextmanager
def new_namespace(api: client.ApiClient) -> Iterator[str]:
    """A namespace of its own for the block, deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


async def closing_finished(seconds: float = 5.0) -> bool:
    """Wait until no connection of the running loop is still closing; False after ``seconds``.

    For a loop about to end inside the test process: Kopf closes the API responses still open
    at its exit gracefully (a TLS close_notify exchange with the API server) without waiting for
    them, and a loop closed meanwhile leaves their sockets open ("unclosed transport", or
    CLOSE_WAIT sockets found by the leak check). A connection still closing is still registered
    with the loop's selector; the loop's own wake-up socket always is.
    """
    loop = asyncio.get_running_loop()
    selector = getattr(loop, "_selector", None)
    if selector is None:
        return True
    deadline = loop.time() + seconds
    while len(selector.get_map()) > 1:  # beyond the loop's own wake-up socket
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def close_pools(api: client.ApiClient) -> None:
    """Close the client's pooled connections, which ``ApiClient.close()`` no longer does.

    With urllib3 2 its ``PoolManager.clear()`` only forgets the pools; their sockets close when
    a pool is garbage-collected, and a response that outlives the test (a followed log) keeps
    its pool, and so every connection in it, open.
    """
    pools = api.rest_client.pool_manager.pools
    for key in pools.keys():  # noqa: SIM118 - the container cannot be iterated
        pools[key].close()


class Objects:
    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.custom = client.CustomObjectsApi(api)
        self.apps = client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)

    def create(self, plural: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Create the object; the API server's answer."""
        kind = {
            "sessions": "Session",
            "templates": "Template",
            "connections": "Connection",
            "templaterepositories": "TemplateRepository",
            "plugins": "Plugin",
            "sessionquotas": "SessionQuota",
        }[plural]
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": name}}
        made: dict[str, Any] = self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.ns, plural, {**body, "spec": spec}
        )
        return made

    def get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    def session(self, name: str) -> dict[str, Any] | None:
        return self.get("sessions", name)

    def spec(self, name: str) -> dict[str, Any]:
        return dict((self.session(name) or {}).get("spec") or {})

    def status(self, name: str) -> dict[str, Any]:
        return (self.session(name) or {}).get("status") or {}

    def set_state(self, name: str, state: str) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, "sessions", name, {"spec": {"state": state}}
        )

    def wait_phase(self, name: str, phase: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        assert wait_until(lambda: self.status(name).get("phase") == phase, timeout), (
            f"{name} never reached {phase}: {self.status(name)}"
        )
        return self.status(name)

    def pods(self, session: str) -> list[Any]:
        label = f"stream.space/session={session}"
        return self.core.list_namespaced_pod(self.ns, label_selector=label).items

    def deployment(self, name: str) -> Any | None:
        try:
            return self.apps.read_namespaced_deployment(workload_name(name), self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, name: str, reason: str | None = None) -> list[Any]:
        """Events on Session ``name`` in the order they were posted."""
        events = self.core.list_namespaced_event(
            self.ns, field_selector=f"involvedObject.name={name},involvedObject.kind=Session"
        ).items
        # resourceVersion orders them (timestamps only have whole seconds)
        ordered = sorted(events, key=lambda e: int(e.metadata.resource_version))
        return [e for e in ordered if reason is None or e.reason == reason]

    def event_reasons(self, name: str) -> list[str]:
        return [e.reason for e in self.events(name)]


def apply_admission(api: client.ApiClient) -> None:
    """The repository's Session admission policy applied (or restored) on ``api``'s cluster."""
    apply_policy(api, Path(__file__).resolve().parents[1] / "crds" / ADMISSION_FILE)


def service_account_kubeconfig(
    api: client.ApiClient, kubeconfig: Path, namespace: str, account: str, path: Path
) -> Path:
    """Write ``path``: ``kubeconfig``'s cluster, reached as ServiceAccount ``namespace/account``
    with a token minted for it (TokenRequest, one hour), so a process run with it has exactly
    the rights RBAC gives that account."""
    request = {"spec": {"expirationSeconds": 3600}}
    minted = client.CoreV1Api(api).create_namespaced_service_account_token(
        account, namespace, request
    )
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": minted.status.token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
