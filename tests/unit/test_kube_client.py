"""The operator's own Kubernetes client ignores ``~/.netrc`` and proxy variables, as Kopf does.

A loopback HTTP server stands in for the API server (only the request's headers matter here).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from aiohttp import web

from receivers import serve_get
from streamspace_operator.kube import Kube, connect

pytestmark = pytest.mark.unit


@pytest.mark.asyncio
async def test_requests_carry_the_bearer_token_only_whatever_the_environment_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"metadata": {"name": "d1"}})

    runner, port = await serve_get(handler)

    # a netrc naming the API server's host, and a proxy nobody listens on: with trust_env
    # aiohttp would add basic auth beside our header (a ValueError) or go to the proxy
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password hunter2\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "the-token"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    api = await connect(str(kubeconfig))
    try:
        found = await Kube(api).get_child("Deployment", "ns", "d1")
    finally:
        await api.close()
        await runner.cleanup()
    assert found == {"metadata": {"name": "d1"}}
    assert [h.get("Authorization") for h in seen] == ["Bearer the-token"]
