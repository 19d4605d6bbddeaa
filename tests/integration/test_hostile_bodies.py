"""Deeply nested JSON bodies (issue 13, item 16): a 400 with the JSON error shape, never a 500.

200,000 ``[`` exhaust the JSON parser's recursion (a ``RecursionError``, which used to leave as a
500 with a traceback in the log); bodies that parse but nest deeper than any real request are
refused as well, before validation or ``json.dumps`` recurse through them. Every route that
accepts JSON is attacked through the real facade.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import pytest

from facade_testing import WEBHOOK_SECRET, Client, FacadeThread, token
from streamspace.webhooks import standard_signature
from streamspace_facade.state import MAX_BODY_DEPTH

pytestmark = pytest.mark.integration

ROUTES = [
    ("POST", "/api/v1/sessions"),
    ("PATCH", "/api/v1/sessions/alice-firefox-0a1b2c3d"),
    ("POST", "/api/v1/templates"),
    ("POST", "/api/v1/repositories"),
    ("POST", "/api/v1/catalog/repositories"),
    ("POST", "/api/v1/admin/apikeys"),
    ("POST", "/api/v1/plugins/install"),
    ("PUT", "/api/v1/plugins/hook/config"),
    ("POST", "/api/v1/plugins/catalog/1/rate"),
    ("POST", "/api/v1/plugins/repositories"),
]
BOMB = b"[" * 200_000
DEEP = b'{"tags": ' + b"[" * 40 + b"]" * 40 + b"}"  # parses, but 41 levels deep
SHALLOW = b'{"x": ' + b"[" * (MAX_BODY_DEPTH - 1) + b"]" * (MAX_BODY_DEPTH - 1) + b"}"


@pytest.fixture
def facade(start_facade: Callable[..., FacadeThread]) -> FacadeThread:
    return start_facade()


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_attack_nesting_bomb_is_a_400(facade: FacadeThread, method: str, path: str) -> None:
    admin = Client(facade.url, token("root", "admin"))
    for body in (BOMB, DEEP):
        reply = admin.request(method, path, raw=body)
        assert reply.status == 400, (path, reply)
        assert reply.body["code"] == "BAD_REQUEST"
        assert set(reply.body) == {"error", "code", "details"}
        assert f"nests deeper than {MAX_BODY_DEPTH} levels" in reply.body["error"]
    # a body just inside the limit is judged on its fields (422 unknown field), not its depth
    within = admin.request(method, path, raw=SHALLOW)
    assert within.status != 400 and within.status < 500, (path, within)
    assert Client(facade.url).get("/health").status == 200


def test_attack_nesting_bomb_on_the_signed_webhook(facade: FacadeThread) -> None:
    delivery, stamp = f"msg_{uuid.uuid4().hex}", int(time.time())
    signed = {
        "webhook-id": delivery,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard_signature(WEBHOOK_SECRET, delivery, stamp, BOMB),
    }
    reply = Client(facade.url).post("/webhooks/repository/sync", raw=BOMB, headers=signed)
    assert reply.status == 400, reply
    assert reply.body["error"] == "the body nests too deeply"
