"""The facade's Kubernetes edge: custom objects as plain dicts, watches as streams. Repository
credential Secrets are only ever created, never read, changed or deleted (decision 90); a
plugin's Secret is also read and patched, always after checking that its owner is the Plugin
(decision 122).

Responses are read as raw JSON (no client-model deserialisation). API failures become
:class:`~streamspace_facade.errors.ApiError`: 404 → NOT_FOUND, 409 → CONFLICT, 422 (the API
server's validation, with its field paths) → VALIDATION_FAILED, an unreachable API server → 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
from kubernetes_asyncio import client, config
from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.naming import is_object_name
from streamspace_facade import metrics
from streamspace_facade.errors import ApiError, conflict, invalid, unavailable

log = logging.getLogger(__name__)

FIELD_MANAGER = "streamspace-facade"
CLIENT = "streamspace"  # the client label of streamspace_kubernetes_requests_total
MERGE = "application/merge-patch+json"
PLURALS = {
    "Session": "sessions",
    "Template": "templates",
    "Connection": "connections",
    "TemplateRepository": "templaterepositories",
    "Plugin": "plugins",
    "SessionQuota": "sessionquotas",
}


async def connect(
    kubeconfig: str | None,
    *,
    connections: int | None = None,
    factory: Callable[[client.Configuration], client.ApiClient] | None = None,
) -> client.ApiClient:
    """An API client for ``kubeconfig``, or the in-cluster service account when None.

    ``connections`` bounds its connection pool (the library's default is 100); requests
    beyond it wait for a free connection of this client, never of another one. ``factory``
    makes another kind of client (the terminals' WebSocket one) from the configuration.
    """
    configuration = client.Configuration()
    if kubeconfig:
        await config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    else:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    return (factory or CountedApiClient)(configuration)


class CountedApiClient(client.ApiClient):
    """An ``ApiClient`` that counts each request in ``streamspace_kubernetes_requests_total``.

    ``request`` is the one call every generated API method (and every watch) goes through.
    """

    async def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        try:
            response = await super().request(method, url, *args, **kwargs)
        except ApiException as exc:
            metrics.kubernetes_request(CLIENT, method, exc.status)
            raise
        except BaseException:  # no answer: refused, reset, timed out or cancelled
            metrics.kubernetes_request(CLIENT, method, None)
            raise
        metrics.kubernetes_request(CLIENT, method, response.status)
        return response


THROTTLE_RETRIES = 3
Events = AsyncGenerator[tuple[str, dict[str, Any]], None]
"""Watch events as (type, object); close it (``contextlib.aclosing``) when leaving early."""


def _retry_after(raw: bytes) -> float:
    try:
        seconds = float(json.loads(raw)["details"]["retryAfterSeconds"])
    except (ValueError, KeyError, TypeError):
        seconds = 1.0
    return min(max(seconds, 0.1), 1.0)


def _error(kind: str, name: str | None, status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    message = str(body.get("message") or f"Kubernetes API answered {status}")
    if status == 404:
        return ApiError(404, "NOT_FOUND", f"{kind} {name!r} not found")
    if status == 409:
        return conflict(message)
    if status == 422:
        causes = (body.get("details") or {}).get("causes") or []
        fields = {
            str(c.get("field") or "body"): str(c.get("message") or c.get("reason") or "invalid")
            for c in causes
        }
        return invalid(fields or {"body": message})
    if status in (429, 503):
        return unavailable("Kubernetes API busy; retry shortly")
    if status in (400, 413):
        return ApiError(400, "BAD_REQUEST", message)
    log.error("Kubernetes API error %s on %s %s: %s", status, kind, name, message)
    return ApiError(502, "KUBERNETES_ERROR", f"Kubernetes API error ({status})")


WATCH_SECONDS = 290
"""How long one watch request lasts before it is renewed (from the last resourceVersion)."""

Event = Callable[[str, dict[str, Any]], Awaitable[None]]


class Expired(Exception):
    """The API server no longer has the resourceVersion a watch resumed from (410 Gone)."""


BROKEN = (aiohttp.ClientError, TimeoutError, ConnectionError)
"""A watch stream that broke (API server restarted, connection cut) rather than one refused."""


class Kube:
    """Typed-enough access to our custom resources and to Secrets in one namespace scope."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)

    async def _call(self, kind: str, name: str | None, call: Any, *args: Any, **kwargs: Any) -> Any:
        if name is not None and not is_object_name(name):
            # never let "." or ".." turn an object URL into its collection's
            raise ApiError(404, "NOT_FOUND", f"{kind} {name!r} not found")
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                response = await call(*args, _preload_content=False, **kwargs)
                raw = await response.read()
            except ApiException as exc:
                raise _error(kind, name, int(exc.status or 500), (exc.body or b"")) from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("Kubernetes API unreachable: %s", exc)
                raise unavailable("Kubernetes API unavailable") from None
            if response.status == 429 and attempt < THROTTLE_RETRIES:
                # not processed (throttled, or a watch cache still initialising): retry, as
                # client-go does, after the time the server asks for (capped)
                await asyncio.sleep(_retry_after(raw))
                continue
            if response.status >= 400:
                raise _error(kind, name, response.status, raw)
            break
        return json.loads(raw) if raw else {}

    async def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(
            kind,
            name,
            self.custom.get_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURALS[kind],
            name,
        )
        return obj

    async def list(
        self, kind: str, namespace: str | None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Items and the list's resourceVersion (to start a watch from)."""
        kwargs: dict[str, Any] = {}
        if label_selector:
            kwargs["label_selector"] = label_selector
        if namespace is None:
            data = await self._call(
                kind,
                None,
                self.custom.list_cluster_custom_object,
                API_GROUP,
                API_VERSION,
                PLURALS[kind],
                **kwargs,
            )
        else:
            data = await self._call(
                kind,
                None,
                self.custom.list_namespaced_custom_object,
                API_GROUP,
                API_VERSION,
                namespace,
                PLURALS[kind],
                **kwargs,
            )
        return list(data.get("items") or []), str(data["metadata"].get("resourceVersion", ""))

    async def create(self, kind: str, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = await self._call(
            kind,
            str((body.get("metadata") or {}).get("name")),
            self.custom.create_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURALS[kind],
            {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": kind, **body},
            field_manager=FIELD_MANAGER,
        )
        return obj

    async def patch(
        self,
        kind: str,
        namespace: str,
        name: str,
        patch: Mapping[str, Any],
        *,
        status: bool = False,
    ) -> dict[str, Any]:
        """JSON merge patch of the object (or of its status subresource)."""
        call = (
            self.custom.patch_namespaced_custom_object_status
            if status
            else self.custom.patch_namespaced_custom_object
        )
        obj: dict[str, Any] = await self._call(
            kind,
            name,
            call,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURALS[kind],
            name,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )
        return obj

    async def delete(
        self, kind: str, namespace: str, name: str, *, uid: str | None = None
    ) -> dict[str, Any]:
        """Delete (only if it is still the object ``uid``, when given: else 409); the object as
        the API server returned it (it may linger for finalizers)."""
        options: dict[str, Any] = {}
        if uid is not None:
            options["body"] = {"preconditions": {"uid": uid}}
        obj: dict[str, Any] = await self._call(
            kind,
            name,
            self.custom.delete_namespaced_custom_object,
            API_GROUP,
            API_VERSION,
            namespace,
            PLURALS[kind],
            name,
            propagation_policy="Background",
            **options,
        )
        return obj

    async def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a Secret (named, or with ``generateName``)."""
        obj: dict[str, Any] = await self._call(
            "Secret",
            body["metadata"].get("name"),
            self.core.create_namespaced_secret,
            namespace,
            {"apiVersion": "v1", "kind": "Secret", **body},
            field_manager=FIELD_MANAGER,
        )
        return obj

    async def get_secret(self, namespace: str, name: str) -> dict[str, Any]:
        """A Secret by name (plugin Secrets only: callers check its owner before using it)."""
        obj: dict[str, Any] = await self._call(
            "Secret", name, self.core.read_namespaced_secret, name, namespace
        )
        return obj

    async def patch_secret(
        self, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        """JSON merge patch of a Secret (``metadata.uid`` in it makes it conditional)."""
        obj: dict[str, Any] = await self._call(
            "Secret",
            name,
            self.core.patch_namespaced_secret,
            name,
            namespace,
            patch,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
        )
        return obj

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        pod: dict[str, Any] = await self._call(
            "Pod", name, self.core.read_namespaced_pod, name, namespace
        )
        return pod

    async def get_apps(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        """A ``Deployment`` or ``ReplicaSet`` (a session pod's owner chain, ``terminal``)."""
        apps = client.AppsV1Api(self.api)
        call = {
            "Deployment": apps.read_namespaced_deployment,
            "ReplicaSet": apps.read_namespaced_replica_set,
        }[kind]
        obj: dict[str, Any] = await self._call(kind, name, call, name, namespace)
        return obj

    async def pod_log(
        self, namespace: str, name: str, container: str, tail_lines: int
    ) -> aiohttp.ClientResponse:
        """The follow stream of a container's log, with timestamps; the caller lets go of it
        with :func:`close_stream`."""
        if not is_object_name(name):
            raise ApiError(404, "NOT_FOUND", f"Pod {name!r} not found")
        try:
            response: Any = await self.core.read_namespaced_pod_log(
                name,
                namespace,
                container=container,
                follow=True,
                timestamps=True,
                tail_lines=tail_lines,
                _preload_content=False,
            )
        except ApiException as exc:
            raise _error("Pod", name, int(exc.status or 500), exc.body or b"") from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("Kubernetes API unreachable: %s", exc)
            raise unavailable("Kubernetes API unavailable") from None
        if response.status >= 400:
            raw = await response.read()
            response.release()
            raise _error("Pod", name, response.status, raw)
        stream: aiohttp.ClientResponse = response
        return stream

    async def watch_pod(
        self, namespace: str, name: str, resource_version: str, timeout_seconds: int
    ) -> Events:
        """Watch events of one Pod, as :meth:`watch` does for our kinds."""
        response = await self._open_watch(
            "Pod",
            self.core.list_namespaced_pod,
            (namespace,),
            resource_version,
            timeout_seconds,
            field_selector=f"metadata.name={name}",
        )
        async with contextlib.aclosing(_events(response)) as events:
            async for event in events:
                yield event

    async def _open_watch(
        self,
        kind: str,
        call: Any,
        args: tuple[Any, ...],
        resource_version: str,
        timeout_seconds: int,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await call(
                *args,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=timeout_seconds + 30,
                **kwargs,
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Expired(str(exc.reason)) from None
            raise _error(kind, None, int(exc.status or 500), exc.body or b"") from None
        if response.status >= 400:
            raw = await response.read()
            response.release()
            if response.status == 410:
                raise Expired(raw.decode(errors="replace")[:200])
            raise _error(kind, None, response.status, raw)
        return response

    async def watch(
        self, kind: str, namespace: str | None, resource_version: str, timeout_seconds: int
    ) -> Events:
        """Watch events after ``resource_version`` as (type, object) until the server ends it.

        An ``ERROR`` event (e.g. 410 Gone) is yielded as is; the caller re-lists.
        """
        args: list[Any] = [API_GROUP, API_VERSION]
        call: Any
        if namespace is None:
            call = self.custom.list_cluster_custom_object
        else:
            call = self.custom.list_namespaced_custom_object
            args.append(namespace)
        args.append(PLURALS[kind])
        response = await self._open_watch(
            kind, call, tuple(args), resource_version, timeout_seconds
        )
        async with contextlib.aclosing(_events(response)) as events:
            async for event in events:
                yield event

    async def follow(
        self,
        kind: str,
        namespace: str | None,
        version: str,
        on_event: Event,
        *,
        retry_seconds: float,
        reader: str,
    ) -> None:
        """Hand every change after ``version`` to ``on_event``, renewing the watch as it ends,
        until the API server no longer has the version reached: then return, and the caller
        lists again.

        A stream that breaks (the API server restarted, a connection cut) or a watch the API
        server refuses for now (busy, starting) is resumed from the last version seen after
        ``retry_seconds``, as Kubernetes' own clients do: a list of every object is needed only
        when the server answers 410 Gone. An exception of ``on_event`` ends the follow.
        ``reader`` names the follower in the log.
        """
        while True:
            try:
                events = self.watch(kind, namespace, version, WATCH_SECONDS)
                async with contextlib.aclosing(events):
                    async for event, obj in events:
                        if event == "ERROR":  # 410 Gone, in the stream
                            said = obj.get("message")
                            log.info("%s: watch of %s expired: %s", reader, kind, said)
                            return
                        if event != "BOOKMARK":
                            await on_event(event, obj)
                        version = str(obj["metadata"].get("resourceVersion") or version)
            except Expired as exc:
                log.info("%s: watch of %s expired: %s", reader, kind, exc)
                return
            except (*BROKEN, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status not in (502, 503):
                    raise
                log.warning(
                    "%s: watch of %s broken (%s: %s); resuming from %s in %.1fs",
                    reader,
                    kind,
                    type(exc).__name__,
                    exc,
                    version,
                    retry_seconds,
                )
                await asyncio.sleep(retry_seconds)


def close_stream(response: aiohttp.ClientResponse) -> None:
    """Let go of a streamed response (a watch, a followed log): its connection goes back to
    the pool when it was read to the end, and is cut when it was not.

    A stream left mid-way cannot be reused. Releasing it would close its TLS connection
    gracefully, a close_notify exchange with the API server that nothing waits for: when the
    event loop stops first (the facade shutting down right after a log follower left), its
    socket is never closed ("unclosed transport" at interpreter exit). Cut, it is closed on the
    loop's next iteration."""
    if not response.content.at_eof():
        connection = response.connection
        if connection is not None and connection.transport is not None:
            connection.transport.abort()
    response.release()


async def _events(response: aiohttp.ClientResponse) -> Events:
    try:
        async for line in response.content:
            if line.strip():
                event = json.loads(line)
                yield str(event["type"]), event["object"]
    finally:
        close_stream(response)
