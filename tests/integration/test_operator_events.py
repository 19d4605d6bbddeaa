"""Events the operator posts into a namespace being deleted: the API server refuses anything new
there with a 403. That refusal is no permission problem and must not be logged as one (the chart
tests fail on any "forbidden" in the operator's log; an RBAC denial still is a warning)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import pytest
from kubernetes import client

from streamspace.lifecycle import Event
from streamspace_dev.process import wait_until
from streamspace_operator.kube import Kube, connect

pytestmark = pytest.mark.integration

HOLD = "example.com/hold"


async def post(kubeconfig: str, namespace: str) -> None:
    api = await connect(kubeconfig)
    try:
        session = {"kind": "Session", "metadata": {"name": "s1", "namespace": namespace}}
        await Kube(api).post_event(session, Event("Warning", "TemplateNotFound", "no template"))
    finally:
        await api.close()


def test_an_event_into_a_terminating_namespace_is_no_permission_warning(
    cluster: Any, api: client.ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    core = client.CoreV1Api(api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    # a finalizer of ours keeps the namespace Terminating until we let it go
    core.create_namespaced_config_map(name, {"metadata": {"name": "held", "finalizers": [HOLD]}})
    core.delete_namespace(name)
    try:
        assert wait_until(lambda: core.read_namespace(name).status.phase == "Terminating", 30)
        with caplog.at_level(logging.DEBUG, logger="streamspace_operator.kube"):
            asyncio.run(post(str(cluster.kubeconfig), name))
        said = [(r.levelname, r.getMessage()) for r in caplog.records]
        assert ("DEBUG", "no event TemplateNotFound on s1: its namespace is going") in said
        assert not [m for level, m in said if level == "WARNING"], said
        assert core.list_namespaced_event(name).items == []
    finally:
        core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
