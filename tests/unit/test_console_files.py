"""The console's file serving on its own (``streamspace_facade.console``): a directory standing
in for the build, served through the facade's error middleware."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from streamspace_facade import console
from streamspace_facade.app import errors

pytestmark = pytest.mark.unit

Start = Callable[[Path], Coroutine[Any, Any, TestClient[web.Request, web.Application]]]


@pytest_asyncio.fixture
async def serve() -> AsyncIterator[Start]:
    clients: list[TestClient[web.Request, web.Application]] = []

    async def start(root: Path) -> TestClient[web.Request, web.Application]:
        app = web.Application(middlewares=[errors])
        console.add_routes(app.router, root)
        client = TestClient(TestServer(app))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.mark.asyncio
async def test_an_unbuilt_console_is_a_503_that_says_how_to_build_it(
    serve: Start, tmp_path: Path
) -> None:
    client = await serve(tmp_path / "missing")
    answer = await client.get("/")
    assert answer.status == 503
    body = await answer.json()
    assert body["code"] == "UNAVAILABLE"
    assert body["error"] == "the web console is not built: run make console"
    assert (await client.get("/assets/app-X.js")).status == 404


@pytest.mark.asyncio
async def test_only_listed_files_of_known_kinds_are_assets(serve: Start, tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "assets" / "app-ABC.js").write_text("export {}")
    (tmp_path / "assets" / "notes.txt").write_text("not an asset kind")
    (tmp_path / "assets" / "dir.js").mkdir()
    (tmp_path / "secret.js").write_text("outside assets/")
    client = await serve(tmp_path)
    answer = await client.get("/assets/app-ABC.js")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    for name in ("notes.txt", "dir.js", "..%2Fsecret.js", "secret.js", "APP-ABC.js"):
        answer = await client.get(f"/assets/{name}")
        assert answer.status == 404, name
        assert (await answer.json())["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("path", "public"),
    [("/", True), ("/assets/app-X.js", True), ("/assets", False), ("/api/v1/sessions", False)],
)
def test_which_paths_are_the_consoles(path: str, public: bool) -> None:
    assert console.is_public(path) is public
