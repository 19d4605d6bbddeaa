"""The aiohttp application: built by a factory, state in typed app keys, no globals."""

from __future__ import annotations

from aiohttp import web

from streamspace import __version__
from streamspace.config import Settings

SETTINGS = web.AppKey("settings", Settings)


async def health(request: web.Request) -> web.Response:
    """Liveness: the process serves requests."""
    return web.json_response({"status": "ok"})


async def version(request: web.Request) -> web.Response:
    return web.json_response({"name": "streamspace", "version": __version__, "api": "v1"})


def create_app(settings: Settings) -> web.Application:
    app = web.Application(client_max_size=1024**2)
    app[SETTINGS] = settings
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    return app
