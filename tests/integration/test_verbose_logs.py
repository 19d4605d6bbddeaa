"""``-v`` turns on DEBUG logs, and the Kubernetes client logs every response body at DEBUG: a
Secret read by the operator or the facade would land in the logs. Our own reads skip the
client's body handling, but a plain generated call (``read_namespaced_secret``) does not; this
makes one against the real API server with verbose logging on and checks the value is nowhere in
what was logged."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from typing import Any

import pytest
from kubernetes import client
from kubernetes_asyncio import client as async_client

from streamspace import logs
from streamspace_facade.kube import connect

pytestmark = pytest.mark.integration


async def read_secret(kubeconfig: str, namespace: str) -> Any:
    async with await connect(kubeconfig) as api_client:
        return await async_client.CoreV1Api(api_client).read_namespaced_secret("canary", namespace)


def test_verbose_logging_never_prints_a_secret_read(
    cluster: Any, api: client.ApiClient, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value = secrets.token_urlsafe(24)
    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "canary"}, "stringData": {"token": value}},
    )
    root = logging.getLogger()
    before = (root.level, list(root.handlers))
    logs.configure("json", verbose=True)
    try:
        secret = asyncio.run(read_secret(str(cluster.kubeconfig), namespace))
        logging.getLogger("streamspace.test").debug("read the canary")
    finally:
        root.setLevel(before[0])
        root.handlers[:] = before[1]
    assert base64.b64decode(secret.data["token"]).decode() == value
    logged = capsys.readouterr().err
    assert "read the canary" in logged  # DEBUG records were written
    encoded = base64.b64encode(value.encode()).decode()
    assert value not in logged and encoded not in logged
