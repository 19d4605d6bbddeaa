"""The web console as a real facade serves it (issue 18): the page, its assets, nothing else.

The console is built by ``make console`` (a step of ``make test``) into the facade package;
these tests read that build to know what the page refers to, and fail, saying so, without it.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from facade_testing import FacadeThread
from streamspace_facade.console import CONTENT_SECURITY_POLICY, DIST

pytestmark = pytest.mark.integration

REFERENCES = re.compile(r'(?:src|href)="(/assets/[^"]+)" integrity="([^"]+)"')


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(self.body)
        return value


def fetch(base: str, path: str) -> Answer:
    """A GET as a browser without credentials sends it: the path exactly as given."""
    parts = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        connection.request("GET", path, headers={"Accept": "text/html,*/*"})
        reply = connection.getresponse()
        return Answer(reply.status, reply.headers, reply.read())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def built() -> str:
    """The built page; a clear failure (not a skip) when ``make console`` has not run."""
    page = DIST / "index.html"
    if not page.is_file():
        pytest.fail(f"the web console is not built ({page} is missing): run make console")
    return page.read_text()


@pytest.fixture
def facade(start_facade: Callable[..., FacadeThread]) -> FacadeThread:
    return start_facade()


def test_the_page_is_served_to_anyone_with_its_security_headers(
    facade: FacadeThread, built: str
) -> None:
    answer = fetch(facade.url, "/")
    assert answer.status == 200
    assert answer.body.decode() == built
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert answer.headers["Cache-Control"] == "no-cache"
    assert answer.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_every_asset_of_the_page_is_served_as_immutable(facade: FacadeThread, built: str) -> None:
    references = REFERENCES.findall(built)
    kinds = {path.rsplit(".", 1)[1] for path, _ in references}
    assert kinds == {"js", "css"}, references
    types = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}
    for path, integrity in references:
        answer = fetch(facade.url, path)
        assert answer.status == 200, path
        assert answer.headers["Content-Type"] == types[path.rsplit(".", 1)[1]], path
        assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert answer.body == (DIST / path.removeprefix("/")).read_bytes()
        digest = base64.b64encode(hashlib.sha384(answer.body).digest()).decode()
        assert integrity == f"sha384-{digest}", path  # the page's SRI matches what is served


@pytest.mark.parametrize(
    "path",
    [
        "/assets/unknown-ABCDEFGH.js",
        "/assets/index.html",  # in the build, but not an asset
        "/assets/.built",
        "/assets/..%2Findex.html",
        "/assets/..%2F..%2F..%2F..%2Fpyproject.toml",
        "/assets/%2E%2E%2F%2E%2E%2Fconsole.py",
        "/assets/..%5C..%5Capp.py",
        "/assets/%2Fetc%2Fpasswd",
        "/assets/",
    ],
)
def test_nothing_else_is_served_from_assets(facade: FacadeThread, built: str, path: str) -> None:
    answer = fetch(facade.url, path)
    assert answer.status == 404, (path, answer.body[:200])
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["code"] == "NOT_FOUND"


def test_a_dot_dot_path_is_not_a_way_out_either(facade: FacadeThread, built: str) -> None:
    """``..`` segments are resolved before routing: the path leaves /assets/ and is then an
    ordinary unknown, authenticated path, never a file of the package or the repository."""
    for path in ("/assets/../pyproject.toml", "/assets/../../console.py", "/assets/./../app.py"):
        answer = fetch(facade.url, path)
        assert answer.status in (401, 404), (path, answer.status)
        assert answer.headers["Content-Type"].startswith("application/json")
        assert b"[project]" not in answer.body
        assert b"import" not in answer.body
