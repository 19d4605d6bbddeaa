"""What the watches hold: the operator's view of Sessions, their Templates and their children.

A reconcile reads the Session, its Template, the children under the session's names and its
pods from here, not from the API server (decision 133). Kopf indexes keep the objects: Kopf
fills them from its watches (the initial listing, then every event; a deletion removes the
object), and starts no handler before every index has its initial listing, so a reconcile never
sees a half-filled cache. Objects are kept reduced to the fields the decision reads.

A write's answer is remembered too (``remember``): the watch event of the same write may come
after the next reconcile of the session, which must not act on the older state again (post an
Event twice, write the same status). Whichever of the index's and the remembered copy has the
higher resourceVersion wins; the remembered one is dropped once the watch has caught up, or
when the object's deletion is seen.

The cache may be behind the API server, and it holds only objects with our label; it never makes
a write unsafe: before a child is created, a GET makes sure its name is free (someone else's
object there has no label of ours, so no watch of ours shows it), and every write to an existing
child carries the uid read here as a precondition. A refused write (404, 409, 422) makes the
reconcile look again with GETs (``sessions.observe``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from streamspace import API_GROUP, API_VERSION
from streamspace.lifecycle import Observed, SessionInput, pods_from
from streamspace.manifests import MANAGED_BY, SESSION_LABEL
from streamspace.naming import label_value, workload_name
from streamspace.ownership import resource_version

SESSIONS = "cache_sessions"
TEMPLATES = "cache_templates"
PODS = "cache_pods"
QUOTAS = "cache_quotas"  # namespace → its SessionQuotas (``quotas``)
USER_SESSIONS = "cache_user_sessions"  # (namespace, user) → names of the user's Sessions
CHILDREN: dict[str, tuple[str, str, str, str]] = {
    # kind: (group, version, plural, index id)
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies", "cache_networkpolicies"),
    "Deployment": ("apps", "v1", "deployments", "cache_deployments"),
    "Service": ("", "v1", "services", "cache_services"),
    "Ingress": ("networking.k8s.io", "v1", "ingresses", "cache_ingresses"),
}
# Annotations nobody here reads, and large: Kopf's state and kubectl's last applied copy.
_SKIPPED_ANNOTATIONS = ("kopf.zalando.org/", "operator.stream.space/", "kubectl.kubernetes.io/")

Key = tuple[str, str]  # namespace, name


def _metadata(meta: Mapping[str, Any], *, annotations: bool = False) -> dict[str, Any]:
    kept = {
        k: meta[k]
        for k in (
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "generation",
            "ownerReferences",
            "deletionTimestamp",
        )
        if k in meta
    }
    if annotations:
        kept["annotations"] = {
            k: v
            for k, v in (meta.get("annotations") or {}).items()
            if not k.startswith(_SKIPPED_ANNOTATIONS)
        }
    return kept


def reduce(kind: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """``body`` with only what the decision and the writes read (the rest is dropped to keep
    10,000 sessions' worth small)."""
    meta = body.get("metadata") or {}
    if kind in ("Session", "Template"):
        return {
            "apiVersion": body.get("apiVersion", f"{API_GROUP}/{API_VERSION}"),
            "kind": kind,
            "metadata": _metadata(meta, annotations=True),
            "spec": dict(body.get("spec") or {}),
            "status": dict(body.get("status") or {}),
        }
    reduced: dict[str, Any] = {"kind": kind, "metadata": _metadata(meta)}
    if kind == "Deployment":
        spec, status = body.get("spec") or {}, body.get("status") or {}
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
        resources = containers[0].get("resources") or {}  # status.resources (usage, quotas)
        reduced["spec"] = {"replicas": spec.get("replicas")}
        if resources:
            reduced["spec"]["template"] = {"spec": {"containers": [{"resources": resources}]}}
        reduced["status"] = {"availableReplicas": status.get("availableReplicas")}
    elif kind == "Pod":
        conditions = (body.get("status") or {}).get("conditions") or []
        ready = [c for c in conditions if c.get("type") == "Ready"]
        reduced["status"] = {
            "conditions": [{"type": "Ready", "status": c.get("status")} for c in ready]
        }
    return reduced


def _newest(values: Iterable[dict[str, Any]]) -> dict[str, Any] | None:
    return max(values, key=resource_version, default=None)


class Cache:
    """The indexes, bound once the operator starts, and the remembered answers of writes."""

    def __init__(self) -> None:
        self.indexes: dict[str, kopf.Index[Any, Any]] = {}
        self.remembered: dict[tuple[str, str, str], dict[str, Any]] = {}

    @property
    def bound(self) -> bool:
        return bool(self.indexes)

    def bind(self, kwargs: Mapping[str, Any]) -> None:
        """Take the indexes from a handler's keyword arguments (Kopf passes them to every one)."""
        ids = [SESSIONS, TEMPLATES, PODS, QUOTAS, USER_SESSIONS]
        ids += [index for *_, index in CHILDREN.values()]
        self.indexes = {i: kwargs[i] for i in ids if i in kwargs}

    def _indexed(self, index: str, key: Key) -> dict[str, Any] | None:
        found = self.indexes.get(index)
        if found is None or key not in found:
            return None
        return _newest(found[key])

    def _lookup(self, kind: str, index: str, ns: str, name: str) -> dict[str, Any] | None:
        indexed = self._indexed(index, (ns, name))
        remembered = self.remembered.get((kind, ns, name))
        if remembered is None:
            return indexed
        if indexed is not None and resource_version(indexed) >= resource_version(remembered):
            del self.remembered[(kind, ns, name)]  # the watch has caught up
            return indexed
        return remembered

    def session(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._lookup("Session", SESSIONS, ns, name)

    def template(self, ns: str, name: str) -> dict[str, Any] | None:
        return self._indexed(TEMPLATES, (ns, name))

    def child(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return self._lookup(kind, CHILDREN[kind][3], ns, name)

    def children(self, session: SessionInput, *, ingress: bool) -> dict[str, Any]:
        """kind → the object under the child's name (None: not seen)."""
        name, ns = workload_name(session.name), session.namespace
        kinds = [kind for kind in CHILDREN if ingress or kind != "Ingress"]
        return {kind: self.child(kind, ns, name) for kind in kinds}

    def pods(self, session: SessionInput) -> list[dict[str, Any]]:
        index = self.indexes.get(PODS)
        key = (session.namespace, label_value(session.name))
        return list(index[key]) if index is not None and key in index else []

    def observe(self, session: SessionInput, *, ingress: bool) -> Observed:
        """``Observed`` as ``sessions.observe`` makes it with GETs, from the cache."""
        children = self.children(session, ingress=ingress)
        return Observed.of(session.uid, children, pods_from(self.pods(session)))

    def remember(self, kind: str, body: Mapping[str, Any] | None) -> None:
        """The answer of a write (the object as it is now), until the watch has caught up."""
        if body is None or kind not in ("Session", *CHILDREN):
            return
        meta = body.get("metadata") or {}
        self.remembered[(kind, str(meta.get("namespace")), str(meta.get("name")))] = reduce(
            kind, body
        )

    def forget(self, kind: str, ns: str, name: str) -> None:
        """The object was deleted: a remembered copy must not bring it back."""
        self.remembered.pop((kind, ns, name), None)


# -- index functions (async: Kopf runs sync ones in its thread pool, one hop per event) --------


async def index_session(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): reduce("Session", body)}


async def index_template(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
    return {(namespace, name): reduce("Template", body)}


def _index_child(kind: str) -> Any:
    async def index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> Any:
        return {(namespace, name): reduce(kind, body)}

    index.__name__ = index.__qualname__ = f"index_{kind.lower()}"
    return index


async def index_pod(namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any) -> Any:
    session = labels.get(SESSION_LABEL)
    if not session:
        return None  # a managed pod of no session (a plugin's)
    return {(namespace, session): reduce("Pod", body)}


def register(registry: kopf.OperatorRegistry, *, ingress: bool) -> None:
    """The indexes; the Ingress one only when sessions get Ingresses (``INGRESS_DOMAIN``)."""
    kopf.index(API_GROUP, API_VERSION, "sessions", registry=registry, id=SESSIONS)(index_session)
    kopf.index(API_GROUP, API_VERSION, "templates", registry=registry, id=TEMPLATES)(index_template)
    for kind, (group, version, plural, index) in CHILDREN.items():
        if kind == "Ingress" and not ingress:
            continue
        kopf.index(group, version, plural, registry=registry, id=index, labels=MANAGED_BY)(
            _index_child(kind)
        )
    kopf.index("", "v1", "pods", registry=registry, id=PODS, labels=MANAGED_BY)(index_pod)
