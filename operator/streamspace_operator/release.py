"""``streamspace operator --release-finalizers``: take our finalizer off every object we serve.

This operator version puts no finalizer on anything (decision 91), and removes the one older
versions put as soon as it handles an object. Objects finalized by an older version whose
operator is gone for good (uninstalled without upgrading first) would stay undeletable, and so
would their namespace: this command frees them without starting the operator. It is safe to run
at any time and any number of times; it touches only ``stream.space/finalizer``.
"""

from __future__ import annotations

import logging

from kubernetes_asyncio.client.exceptions import ApiException

from streamspace import API_GROUP, API_VERSION
from streamspace.config import Settings
from streamspace_operator.kube import PLURALS, Kube, connect

log = logging.getLogger(__name__)

FINALIZER = f"{API_GROUP}/finalizer"
JSON_PATCH = "application/json-patch+json"
ATTEMPTS = 5  # a 409/422 means the list changed under us: read it again


async def _release_one(kube: Kube, plural: str, namespace: str, name: str) -> bool:
    """Remove our finalizer from one object; True if it carried it. A concurrent change of the
    finalizer list makes the ``test`` fail, and the object is read again."""
    for _ in range(ATTEMPTS):
        try:
            obj = await kube.custom.get_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if FINALIZER not in finalizers:
            return False
        index = finalizers.index(FINALIZER)
        path = f"/metadata/finalizers/{index}"
        patch = [
            {"op": "test", "path": path, "value": FINALIZER},
            {"op": "remove", "path": path},
        ]
        try:
            await kube.custom.patch_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural, name, patch, _content_type=JSON_PATCH
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            if exc.status in (409, 422):
                continue
            raise
        return True
    raise RuntimeError(f"{plural}/{namespace}/{name}: its finalizers kept changing")


async def release_finalizers(kube: Kube, namespace: str | None) -> int:
    """Release every object of our kinds in ``namespace`` (None: all namespaces); how many."""
    released = 0
    for plural in PLURALS.values():
        if namespace is None:
            listing = await kube.custom.list_cluster_custom_object(API_GROUP, API_VERSION, plural)
        else:
            listing = await kube.custom.list_namespaced_custom_object(
                API_GROUP, API_VERSION, namespace, plural
            )
        for obj in listing.get("items") or []:
            meta = obj["metadata"]
            if FINALIZER not in (meta.get("finalizers") or []):
                continue
            if await _release_one(kube, plural, meta["namespace"], meta["name"]):
                log.info("released %s %s/%s", plural, meta["namespace"], meta["name"])
                released += 1
    return released


async def release(settings: Settings) -> int:
    """The command: release the namespace(s) the operator would serve, then exit."""
    served = settings.kubernetes.served
    kube = Kube(await connect(settings.kubernetes.kubeconfig))
    try:
        count = 0
        for scope in (None,) if served is None else served:
            count += await release_finalizers(kube, scope)
    finally:
        await kube.api.close()
    where = (
        "all namespaces"
        if served is None
        else f"namespace{'s' if len(served) > 1 else ''} {', '.join(served)}"
    )
    print(f"released {count} object(s) from {FINALIZER} in {where}")
    return 0
