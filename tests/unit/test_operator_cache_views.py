"""The operator's cache: reduced objects, remembered write answers against the watch's copy."""

from __future__ import annotations

from typing import Any

import pytest

from streamspace.lifecycle import SessionInput
from streamspace_operator.cache import CHILDREN, PODS, SESSIONS, Cache, reduce

pytestmark = pytest.mark.unit

UID = "uid-s1"


def obj(kind: str, name: str, rv: str, **extra: Any) -> dict[str, Any]:
    meta = {"name": name, "namespace": "ns", "uid": f"uid-{name}", "resourceVersion": rv}
    return {"kind": kind, "metadata": {**meta, **extra.pop("metadata", {})}, **extra}


def owned(kind: str, rv: str, owner: str = UID, **extra: Any) -> dict[str, Any]:
    ref = {"kind": "Session", "name": "s1", "uid": owner, "controller": True}
    return obj(kind, "s1", rv, metadata={"ownerReferences": [ref]}, **extra)


def cache_with(**indexes: dict[Any, list[dict[str, Any]]]) -> Cache:
    cache = Cache()
    cache.indexes = {name: index for name, index in indexes.items()}  # type: ignore[misc]
    return cache


def test_reduce_keeps_what_the_decision_reads_and_drops_the_rest() -> None:
    session = obj(
        "Session",
        "s1",
        "7",
        metadata={
            "managedFields": [{"manager": "kubectl"}],
            "annotations": {
                "stream.space/state-cause": "hibernated:Idle",
                "operator.stream.space/last-handled-configuration": "{...}",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
        },
        spec={"user": "alice"},
        status={"phase": "Running"},
    )
    kept = reduce("Session", session)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"stream.space/state-cause": "hibernated:Idle"}
    assert kept["spec"] == {"user": "alice"} and kept["status"] == {"phase": "Running"}
    deployment = owned(
        "Deployment",
        "3",
        spec={"replicas": 1, "template": {"spec": {"containers": [{"image": "x"}]}}},
        status={"availableReplicas": 1, "conditions": [{"type": "Available"}]},
    )
    assert reduce("Deployment", deployment)["spec"] == {"replicas": 1}
    assert reduce("Deployment", deployment)["status"] == {"availableReplicas": 1}
    # the container's resources stay: the Session's status.resources is read from them
    sized = {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}
    deployment["spec"]["template"]["spec"]["containers"][0]["resources"] = sized
    assert reduce("Deployment", deployment)["spec"] == {
        "replicas": 1,
        "template": {"spec": {"containers": [{"resources": sized}]}},
    }
    pod = obj("Pod", "p", "1", status={"conditions": [{"type": "Ready", "status": "True"}]})
    assert reduce("Pod", pod)["status"] == {"conditions": [{"type": "Ready", "status": "True"}]}


def test_a_remembered_answer_wins_until_the_watch_catches_up() -> None:
    index: dict[Any, list[dict[str, Any]]] = {("ns", "s1"): [obj("Session", "s1", "10")]}
    cache = cache_with(**{SESSIONS: index})
    cache.remember("Session", obj("Session", "s1", "12", status={"phase": "Running"}))
    assert cache.session("ns", "s1")["status"] == {"phase": "Running"}  # type: ignore[index]
    index[("ns", "s1")] = [obj("Session", "s1", "11")]  # an older event arrives: still ours
    assert cache.session("ns", "s1")["metadata"]["resourceVersion"] == "12"  # type: ignore[index]
    index[("ns", "s1")] = [obj("Session", "s1", "13")]  # the watch is past our write
    assert cache.session("ns", "s1")["metadata"]["resourceVersion"] == "13"  # type: ignore[index]
    assert not cache.remembered


def test_a_deletion_forgets_the_remembered_answer() -> None:
    cache = cache_with(**{CHILDREN["Service"][3]: {}})
    cache.remember("Service", owned("Service", "5"))
    assert cache.child("Service", "ns", "s1") is not None  # created, its event not yet here
    cache.forget("Service", "ns", "s1")
    assert cache.child("Service", "ns", "s1") is None


def test_versions_that_are_no_numbers_leave_the_watch_in_charge() -> None:
    index = {("ns", "s1"): [obj("Session", "s1", "abc")]}
    cache = cache_with(**{SESSIONS: index})
    cache.remember("Session", obj("Session", "s1", "xyz"))
    assert cache.session("ns", "s1")["metadata"]["resourceVersion"] == "abc"  # type: ignore[index]


def test_observe_tells_ours_from_a_labelled_object_of_someone_else() -> None:
    session = SessionInput("s1", "ns", UID, 1, {"user": "alice", "template": "t"}, {})
    pod = reduce(
        "Pod",
        obj("Pod", "s1-abc", "4", status={"conditions": [{"type": "Ready", "status": "True"}]}),
    )
    cache = cache_with(
        **{
            CHILDREN["Deployment"][3]: {
                ("ns", "s1"): [owned("Deployment", "3", spec={"replicas": 1})]
            },
            CHILDREN["Service"][3]: {("ns", "s1"): [owned("Service", "3", owner="someone-else")]},
            CHILDREN["NetworkPolicy"][3]: {},
            PODS: {("ns", "s1"): [pod]},
        }
    )
    observed = cache.observe(session, ingress=False)
    assert observed.deployment is not None and observed.uids == {"Deployment": "uid-s1"}
    assert observed.conflicts == ("Service/s1",)
    assert [(p.name, p.ready) for p in observed.pods] == [("s1-abc", True)]
    assert not observed.network_policy
