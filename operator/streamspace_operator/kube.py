"""The operator's Kubernetes edge: reads as plain dicts, server-side apply, deletes, Events.

Everything the decision functions need arrives here as camelCase dicts (as the API serves them),
so core code never sees client-library model classes. 404s on reads become None; 404s on deletes
and 409s on create-if-absent are success.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.conditions import timestamp
from streamspace.lifecycle import Event
from streamspace_operator import metrics, ratelimit
from streamspace_operator.ratelimit import RateLimiter

log = logging.getLogger(__name__)

FIELD_MANAGER = "streamspace-operator"
CLIENT = "streamspace"  # the client label of streamspace_kubernetes_requests_total
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
MAX_IN_FLIGHT = 64
"""Requests the operator's client has at the API server at once; more wait in the rate
limiter's priority queue (decision 157)."""
POOL_HEADROOM = 16
PLURALS = {
    "Session": "sessions",
    "Template": "templates",
    "Connection": "connections",
    "TemplateRepository": "templaterepositories",
    "Plugin": "plugins",
}


async def connect(kubeconfig: str | None, limiter: RateLimiter | None = None) -> client.ApiClient:
    """An API client for ``kubeconfig``, or the in-cluster service account when None, whose
    requests wait for ``limiter`` (the operator's; one-off tools send unlimited)."""
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if limiter is not None and limiter.max_in_flight is not None:
        # room above the limiter's slots: a body read after its slot is given back (an unread
        # answer, _preload_content=False) never makes a request the limiter admitted queue
        configuration.connection_pool_maxsize = limiter.max_in_flight + POOL_HEADROOM
    api = CountedApiClient(configuration)
    api.limiter = limiter
    _ignore_environment(api)
    return api


def _ignore_environment(api: client.ApiClient) -> None:
    """Make the client's HTTP session ignore proxy variables and ``~/.netrc``, as Kopf's
    watches do (``trust_env`` is off in Kopf by default).

    kubernetes_asyncio opens its session with ``trust_env=True``, and aiohttp then looks up
    ``~/.netrc`` for every request without an ``auth`` argument (ours carry a bearer header
    instead), in the default thread pool: a thread hop and a file read per request, 14 % of
    the operator's CPU in a burst (decision 158). A proxy would have to be set for Kopf's watches
    too, so the operator never reached its API server through one from the environment."""
    rest = api.rest_client
    old = rest.pool_manager
    connector = old.connector
    old.detach()  # the connector (TLS settings, pool size) is kept
    # kubernetes_asyncio's read buffer: an answer carrying a large object fits
    rest.pool_manager = aiohttp.ClientSession(
        connector=connector, trust_env=False, read_bufsize=2**21
    )


class CountedApiClient(client.ApiClient):
    """An ``ApiClient`` that counts each request in ``streamspace_kubernetes_requests_total``,
    holds them to its rate limit, and retries a 429 after its ``Retry-After``.

    ``request`` is the one call every generated API method goes through. Kopf's own requests
    (watches, progress patches, events) are counted by :func:`metrics.kopf_trace`.
    """

    limiter: RateLimiter | None = None
    sleep: Callable[[float], Awaitable[Any]] = staticmethod(asyncio.sleep)

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(1, ratelimit.RETRIES_ON_429 + 2):
            if self.limiter is not None:
                await self.limiter.acquire()
            try:
                response = await super().request(method, url, *args, **kwargs)
            except ApiException as exc:
                self._release()
                metrics.kubernetes_request(CLIENT, method, exc.status)
                if exc.status == 429 and attempt <= ratelimit.RETRIES_ON_429:
                    await self.sleep(ratelimit.retry_after(exc.headers))
                    continue
                raise
            except BaseException:  # no answer: refused, reset, timed out or cancelled
                self._release()
                metrics.kubernetes_request(CLIENT, method, None)
                raise
            self._release()
            metrics.kubernetes_request(CLIENT, method, response.status)
            if response.status == 429 and attempt <= ratelimit.RETRIES_ON_429:
                # an unread answer (_preload_content=False): let its connection go, then again
                response.release()
                await self.sleep(ratelimit.retry_after(response.headers))
                continue
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _release(self) -> None:
        if self.limiter is not None:
            self.limiter.release()


async def _json(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
    """Call a read without model deserialisation; the JSON as a dict, None on 404."""
    response = await call(*args, _preload_content=False, **kwargs)
    raw = await response.read()
    if response.status == 404:
        return None
    if response.status >= 400:
        exc = ApiException(status=response.status, reason=response.reason)
        exc.body = raw
        raise exc
    data: dict[str, Any] = json.loads(raw)
    return data


TERMINATING = "because it is being terminated"
"""The API server's refusal to add an object to a namespace being deleted (a 403)."""


class Kube:
    """Typed entry points over one ``ApiClient``."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        # Typed as Any: the generated stubs omit the request options (_content_type,
        # _preload_content) that server-side apply and raw reads need.
        self.core: Any = client.CoreV1Api(api)
        self.apps: Any = client.AppsV1Api(api)
        self.networking: Any = client.NetworkingV1Api(api)
        self.custom: Any = client.CustomObjectsApi(api)

    # -- custom resources --------------------------------------------------------------------

    async def get_custom(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = await self.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURALS[kind], name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj

    async def patch_custom(
        self, kind: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """A merge patch; the object as it is now."""
        obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            namespace,
            PLURALS[kind],
            name,
            dict(patch),
            _content_type=MERGE,
        )
        return obj

    async def apply_custom(self, kind: str, manifest: Mapping[str, Any]) -> None:
        meta = manifest["metadata"]
        await self.custom.patch_namespaced_custom_object(
            API_GROUP,
            API_VERSION,
            meta["namespace"],
            PLURALS[kind],
            meta["name"],
            dict(manifest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )

    async def list_custom(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects of ``kind`` in ``namespace`` matching a label selector ("" for all)."""
        data = await self.custom.list_namespaced_custom_object(
            API_GROUP, API_VERSION, namespace, PLURALS[kind], label_selector=selector
        )
        return list(data.get("items") or [])

    async def delete_custom(
        self, kind: str, namespace: str, name: str, *, uid: str | None = None
    ) -> None:
        """Delete; with ``uid``, only if ``name`` is still that object (409 otherwise)."""
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(uid=uid or None))
        try:
            await self.custom.delete_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, PLURALS[kind], name, body=options
            )
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def patch_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: Mapping[str, Any],
        *,
        resource_version: str | None = None,
    ) -> dict[str, Any] | None:
        """A merge patch of the status; the object as it is now (None: it is gone).

        With ``resource_version`` the patch applies only to the object at that version (the
        API server answers 409 Conflict if it has changed since): a status decided from an
        older copy is never written over a newer one."""
        body: dict[str, Any] = {"status": dict(status)}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        try:
            obj: dict[str, Any] = await self.custom.patch_namespaced_custom_object_status(
                API_GROUP,
                API_VERSION,
                namespace,
                PLURALS[kind],
                name,
                body,
                _content_type=MERGE,
            )
        except ApiException as exc:
            if exc.status != 404:  # deleted meanwhile: nothing to report on
                raise
            return None
        return obj

    async def ensure_peering(self, name: str, namespaces: Iterable[str] | None) -> None:
        """The objects replicas coordinate on: a KopfPeering in each namespace served (a shard
        peers only in its own namespaces), or one ClusterKopfPeering (None: all namespaces)."""
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        if namespaces is None:
            await _unless_exists(
                self.custom.create_cluster_custom_object(
                    "kopf.dev", "v1", "clusterkopfpeerings", {**body, "kind": "ClusterKopfPeering"}
                )
            )
        for namespace in namespaces or ():
            await _unless_exists(
                self.custom.create_namespaced_custom_object(
                    "kopf.dev", "v1", namespace, "kopfpeerings", {**body, "kind": "KopfPeering"}
                )
            )

    # -- children ----------------------------------------------------------------------------

    async def get_child(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        reader = {
            "Deployment": self.apps.read_namespaced_deployment,
            "Service": self.core.read_namespaced_service,
            "Ingress": self.networking.read_namespaced_ingress,
            "NetworkPolicy": self.networking.read_namespaced_network_policy,
            "PersistentVolumeClaim": self.core.read_namespaced_persistent_volume_claim,
            "Secret": self.core.read_namespaced_secret,
        }[kind]
        return await _json(reader, name, namespace)

    async def list_pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        data = await _json(self.core.list_namespaced_pod, namespace, label_selector=label_selector)
        return list((data or {}).get("items") or [])

    async def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply: create or update the fields we own, idempotently; the object as
        it is now."""
        meta = manifest["metadata"]
        patcher = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Ingress": self.networking.patch_namespaced_ingress,
            "NetworkPolicy": self.networking.patch_namespaced_network_policy,
        }[manifest["kind"]]
        obj = await _json(
            patcher,
            meta["name"],
            meta["namespace"],
            dict(manifest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )
        if obj is None:
            raise ApiException(status=404, reason=f"{manifest['kind']} {meta['name']} not found")
        return obj

    async def scale(self, namespace: str, name: str, replicas: int, *, uid: str) -> dict[str, Any]:
        """Set the replica count of Deployment ``name`` if it is still the object ``uid``
        (a uid in the patch is a precondition: another object answers 409)."""
        patch = {"metadata": {"uid": uid}, "spec": {"replicas": replicas}}
        obj = await _json(
            self.apps.patch_namespaced_deployment, name, namespace, patch, _content_type=MERGE
        )
        if obj is None:
            raise ApiException(status=404, reason=f"Deployment {name} not found")
        return obj

    async def delete(self, kind: str, namespace: str, name: str, *, uid: str) -> None:
        """Delete ``name`` if it is still the object ``uid`` (409 otherwise); gone is success."""
        deleter = {
            "Deployment": self.apps.delete_namespaced_deployment,
            "Service": self.core.delete_namespaced_service,
            "Ingress": self.networking.delete_namespaced_ingress,
            "NetworkPolicy": self.networking.delete_namespaced_network_policy,
        }[kind]
        options = client.V1DeleteOptions(
            propagation_policy="Background", preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            await deleter(name, namespace, body=options)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def create_if_absent(self, manifest: Mapping[str, Any]) -> bool:
        """Create a PVC unless it exists; never touch an existing one (it is user data)."""
        meta = manifest["metadata"]
        try:
            await self.core.create_namespaced_persistent_volume_claim(
                meta["namespace"], dict(manifest)
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def create_secret(self, manifest: Mapping[str, Any]) -> bool:
        """Create a Secret unless one of that name exists (False then: never overwritten)."""
        try:
            await self.core.create_namespaced_secret(
                manifest["metadata"]["namespace"], dict(manifest)
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    # -- events ------------------------------------------------------------------------------

    async def post_event(self, involved: Mapping[str, Any], event: Event) -> None:
        """A core/v1 Event on ``involved`` (shown by `kubectl describe`); failures only logged."""
        meta = involved["metadata"]
        now = timestamp(datetime.now(UTC))
        body = {
            "metadata": {
                "name": f"{meta['name']}.{secrets.token_hex(8)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": {
                "apiVersion": involved.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
                "kind": involved.get("kind"),
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.core.create_namespaced_event(meta["namespace"], body)
        except ApiException as exc:
            if exc.status == 403 and TERMINATING in str(exc.body or ""):
                # the namespace is being deleted: nothing can be added to it, nobody will read
                # it, and it is no permission problem (RBAC denials stay warnings)
                log.debug("no event %s on %s: its namespace is going", event.reason, meta["name"])
                return
            log.warning("could not post event %s on %s: %s", event.reason, meta["name"], exc.reason)

    # -- credentials -------------------------------------------------------------------------

    async def get_typed_secret(
        self, namespace: str, name: str, secret_type: str
    ) -> dict[str, Any] | None:
        """The Secret ``name`` if its type is ``secret_type``, else None: a Secret of any other
        type is never even read (the API server filters by type)."""
        data = await _json(
            self.core.list_namespaced_secret,
            namespace,
            field_selector=f"metadata.name={name},type={secret_type}",
        )
        items = list((data or {}).get("items") or [])
        return items[0] if items else None


async def _unless_exists(creation: Awaitable[Any]) -> None:
    """Create something that may exist already (another replica, an earlier start)."""
    try:
        await creation
    except ApiException as exc:
        if exc.status != 409:
            raise
