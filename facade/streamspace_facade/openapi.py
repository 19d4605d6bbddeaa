"""The OpenAPI 3 document at ``/api/v1/openapi.json``, describing every route of the app."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from streamspace import __version__


def document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method == "HEAD":
            continue
        paths.setdefault(path, {})[route.method.lower()] = {
            "responses": {"200": {"description": "OK"}}
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "StreamSpace API", "version": __version__},
        "paths": paths,
    }


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/openapi.json", openapi)
