"""Operator shards (issue 17): two operators on disjoint namespace sets, on the full profile.

Each shard is a real ``streamspace operator`` process with ``OPERATOR_NAMESPACES`` and peering
on, both at the same peering priority: had they shared a peering object, Kopf would pause both
(equal priorities), so Sessions reaching Running prove each shard peers in its own namespaces
only. Which operator handled what comes from their logs (``-v``: one JSON line per handler
call, with the object's namespace). A Session in a namespace no shard owns is left alone, and a
stopped shard's namespaces wait for it while the other shard carries on.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from streamspace_dev import process
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, TIMEOUT, Objects, new_namespace

pytestmark = pytest.mark.integration

PRIORITY = "7"  # the same for both shards: shared peering would pause them both


@dataclass
class Shard:
    name: str
    namespaces: tuple[str, ...]
    record: process.Started
    liveness: str

    def probe(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as resp:  # noqa: S310
                body: dict[str, Any] = json.loads(resp.read())
                return body
        except OSError:
            return None

    def handled(self) -> list[dict[str, Any]]:
        """The objects this operator's handlers were called for (``-v``), in order."""
        records = []
        for line in Path(self.record.log).read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line of the Python runtime (none expected), not ours
            if "handled" in record:
                records.append(record["handled"])
        return records


def _start(cluster: Any, tmp_path: Path, name: str, namespaces: tuple[str, ...]) -> Shard:
    port = process.free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(cluster.kubeconfig),
        "OPERATOR_NAMESPACES": ",".join(namespaces),
        "POD_ID": f"operator-{name}",
        "LOG_FORMAT": "json",
    }
    env.pop("DATABASE_URL", None)
    argv = [
        sys.executable, "-m", "streamspace.cli", "-v", "operator", f"--priority={PRIORITY}",
        f"--liveness=http://127.0.0.1:{port}/healthz", "--metrics-port=0",
    ]  # fmt: skip
    log = tmp_path / f"operator-{name}-{os.urandom(3).hex()}.log"
    record = process.start(f"operator-{name}", argv, log, env=env)
    return Shard(name, namespaces, record, f"http://127.0.0.1:{port}/healthz")


@pytest.fixture
def namespaces(full_cluster: Any, api: client.ApiClient) -> Iterator[list[Objects]]:
    """Five namespaces with the Template: two per shard, and one that no shard owns."""
    with ExitStack() as stack:
        spaces = [Objects(api, stack.enter_context(new_namespace(api))) for _ in range(5)]
        for space in spaces:
            space.create("templates", "firefox-browser", TEMPLATE)
        yield spaces


def _session(space: Objects, name: str) -> None:
    space.create("sessions", name, {"user": "alice", "template": "firefox-browser"})


def test_two_shards_reconcile_only_their_own_namespaces(
    full_cluster: Any, namespaces: list[Objects], tmp_path: Path
) -> None:
    a1, a2, b1, b2, nobody = namespaces
    sets = {"a": (a1.ns, a2.ns), "b": (b1.ns, b2.ns)}
    shards = {name: _start(full_cluster, tmp_path, name, sets[name]) for name in sets}
    try:
        for shard in shards.values():
            up = wait_until(lambda s=shard: s.probe() is not None, 60)
            assert up, process.log_tail(shard.record)
            # the liveness endpoint says which namespaces the replica serves
            assert shard.probe() == {"namespace": ",".join(shard.namespaces)}

        for space in namespaces:
            _session(space, "desk")
        for space in (a1, a2, b1, b2):
            space.wait_phase("desk", "Running")

        # each shard handled objects of its own namespaces only, and the sessions of both
        for name, shard in shards.items():
            handled = shard.handled()
            assert {h["namespace"] for h in handled} <= set(shard.namespaces), name
            assert {(h["namespace"], h["name"]) for h in handled if h["kind"] == "Session"} >= {
                (ns, "desk") for ns in shard.namespaces
            }, name
        # the namespace nobody owns: no children, no status, no Kopf annotations
        assert nobody.deployment("desk") is None
        untouched = nobody.session("desk") or {}
        assert "status" not in untouched
        assert not any(
            key.startswith("operator.stream.space/")
            for key in (untouched["metadata"].get("annotations") or {})
        )
        # a KopfPeering in each shard namespace, holding that shard's operator only
        for name, shard in shards.items():
            for ns in shard.namespaces:
                peering = a1.custom.get_namespaced_custom_object(
                    "kopf.dev", "v1", ns, "kopfpeerings", "streamspace"
                )
                assert set(peering.get("status") or {}) == {f"operator-{name}"}, (ns, peering)

        # shard b stops: its namespaces wait, shard a carries on
        assert process.stop(shards["b"].record)
        _session(b1, "later")
        _session(a1, "later")
        a1.wait_phase("later", "Running")
        assert b1.deployment("later") is None and "status" not in (b1.session("later") or {})

        # shard b returns and catches up
        shards["b"] = _start(full_cluster, tmp_path, "b", sets["b"])
        b1.wait_phase("later", "Running", timeout=TIMEOUT)
        assert {h["namespace"] for h in shards["b"].handled()} <= set(sets["b"])
        assert nobody.deployment("desk") is None
    finally:
        for shard in shards.values():
            process.stop(shard.record)
