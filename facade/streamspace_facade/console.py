"""The web console's files: ``/`` (its one page) and ``/assets/{name}`` (its hashed bundles).

``make console`` builds ``console/`` (Preact + htm, bundled by esbuild; decision 162) into
``console_dist/`` beside this module, which the wheel ships as package data: ``index.html``
and ``assets/`` with content-hashed names. The page is ``no-cache`` (a browser revalidates it,
so a new build is seen at once) and carries a strict Content-Security-Policy; an asset's name
changes with its content, so assets are cached for a year as immutable. An asset is served only
when its name is one of the files the build wrote (a directory listing, not a path join), so
no request reaches outside ``assets/``. The console routes inside the page (``#/sessions``,
``#/catalog``), so nothing else is served. Both routes are public: the page signs in through
the API.

Files are read on every request (off the event loop): a rebuild while the facade runs is
served at once, and the page (~1 KB) and the bundles (~30 KB, gzipped by ``httpcache``) are
cheap to read.
"""

from __future__ import annotations

import asyncio
from pathlib import Path, PurePosixPath

from aiohttp import web

from streamspace_facade.errors import not_found, unavailable

DIST = Path(__file__).with_name("console_dist")
ASSETS = "/assets/"
PAGE = "/"

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
PAGE_HEADERS = {
    **COMMON_HEADERS,
    "Cache-Control": "no-cache",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
}
ASSET_HEADERS = {**COMMON_HEADERS, "Cache-Control": "public, max-age=31536000, immutable"}
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
"""The kinds of file an asset may be; any other name is a 404."""
TEXT = frozenset({".js", ".css", ".map", ".svg"})
NOT_BUILT = "the web console is not built: run make console"


def is_public(path: str) -> bool:
    """Whether ``path`` is the console's (served without credentials)."""
    return path == PAGE or path.startswith(ASSETS)


class Console:
    """Serves one build output directory (``DIST``, or another in tests)."""

    def __init__(self, root: Path = DIST) -> None:
        self.root = root

    def _page(self) -> bytes | None:
        try:
            return (self.root / "index.html").read_bytes()
        except FileNotFoundError:
            return None

    def _asset(self, name: str) -> bytes | None:
        folder = self.root / "assets"
        try:
            if name not in {entry.name for entry in folder.iterdir()}:
                return None
            return (folder / name).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None

    async def page(self, request: web.Request) -> web.Response:
        body = await asyncio.to_thread(self._page)
        if body is None:
            raise unavailable(NOT_BUILT)
        return web.Response(
            body=body, content_type="text/html", charset="utf-8", headers=PAGE_HEADERS
        )

    async def asset(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        suffix = PurePosixPath(name).suffix
        if suffix not in CONTENT_TYPES:
            raise not_found("asset", name)
        body = await asyncio.to_thread(self._asset, name)
        if body is None:
            raise not_found("asset", name)
        return web.Response(
            body=body,
            content_type=CONTENT_TYPES[suffix],
            charset="utf-8" if suffix in TEXT else None,
            headers=ASSET_HEADERS,
        )


def add_routes(router: web.UrlDispatcher, root: Path = DIST) -> None:
    console = Console(root)
    router.add_get(PAGE, console.page)
    router.add_get(ASSETS + "{name}", console.asset)
