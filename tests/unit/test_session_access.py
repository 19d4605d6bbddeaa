"""The session access gate's pure parts: credentials, the verdict, the original request."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from streamspace.auth.access import (
    AccessError,
    Grant,
    issue,
    judge,
    original_request,
    read,
    session_host,
    signing_key,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
KEY = signing_key("a-secret-of-at-least-thirty-two-characters")
DOMAIN = "sessions.example.com"
ALICE = Grant("streamspace", "alice-firefox-1a2b3c4d", "alice", "alice", NOW + timedelta(minutes=5))
HOST = session_host(ALICE.session, DOMAIN)


def test_a_credential_reads_back_as_its_grant() -> None:
    assert read(KEY, issue(KEY, ALICE), NOW) == ALICE
    assert HOST == "alice-firefox-1a2b3c4d.sessions.example.com"


def test_the_signing_key_is_derived_not_the_secret_itself() -> None:
    secret = "a-secret-of-at-least-thirty-two-characters"
    assert signing_key(secret) != secret.encode()
    assert signing_key(secret) == KEY and len(KEY) == 32
    assert signing_key(secret + "x") != KEY


def _forge(payload: dict[str, object]) -> str:
    """A credential with ``payload`` and the signature of ALICE's: what a tamperer can make."""
    _, _, signature = issue(KEY, ALICE).split(".")
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"v1.{body}.{signature}"


GOOD = issue(KEY, ALICE)
BOB = Grant(ALICE.namespace, "bob-firefox-99aa88bb", "bob", "bob", ALICE.expires)
ADMIN_ON_ALICES = Grant(ALICE.namespace, ALICE.session, "root", "alice", ALICE.expires)

CASES = {
    "owner's credential on the session's host": (GOOD, HOST, DOMAIN, 200),
    "no credential": (None, HOST, DOMAIN, 401),
    "empty credential": ("", HOST, DOMAIN, 401),
    "garbage": ("not-a-credential", HOST, DOMAIN, 401),
    "non-ASCII signature": (GOOD[:-2] + "é", HOST, DOMAIN, 401),
    "another key": (issue(signing_key("another-secret-of-thirty-two-chars!!"), ALICE), HOST,
                    DOMAIN, 401),
    "payload changed (session)": (_forge({"ns": "streamspace", "s": "bob-x", "u": "alice",
                                          "o": "alice", "exp": 4102444800}), HOST, DOMAIN, 401),
    "expired": (issue(KEY, replace(ALICE, expires=NOW)), HOST, DOMAIN, 401),
    "huge": ("v1." + "a" * 5000 + ".b", HOST, DOMAIN, 401),
    "bob's credential on alice's host": (issue(KEY, BOB), HOST, DOMAIN, 403),
    "alice's credential on bob's host": (GOOD, session_host(BOB.session, DOMAIN), DOMAIN, 403),
    "another domain": (GOOD, f"{ALICE.session}.evil.example", DOMAIN, 403),
    "the domain itself": (GOOD, DOMAIN, DOMAIN, 403),
    "no host": (GOOD, "", DOMAIN, 403),
    "a non-owner's credential for the session": (issue(KEY, ADMIN_ON_ALICES), HOST, DOMAIN, 403),
    "no INGRESS_DOMAIN: the first label decides": (GOOD, f"{ALICE.session}.anything", None, 200),
    "no INGRESS_DOMAIN, another session": (GOOD, "bob-firefox-99aa88bb.x", None, 403),
}  # fmt: skip


@pytest.mark.parametrize(("token", "host", "domain", "status"), CASES.values(), ids=CASES)
def test_judge(token: str | None, host: str, domain: str | None, status: int) -> None:
    verdict = judge(KEY, token, host, domain, NOW)
    assert verdict.status == status, verdict.reason
    assert (verdict.grant is not None) == (status == 200)
    if token:
        assert token not in verdict.reason


def test_expiry_is_exclusive_and_the_reason_says_expired() -> None:
    token = issue(KEY, ALICE)
    assert judge(KEY, token, HOST, DOMAIN, ALICE.expires - timedelta(seconds=1)).status == 200
    verdict = judge(KEY, token, HOST, DOMAIN, ALICE.expires)
    assert (verdict.status, verdict.reason) == (401, "session credential expired")
    with pytest.raises(AccessError):
        read(KEY, token, ALICE.expires)


ORIGINALS = {
    "ingress-nginx": (
        {"X-Original-URL": f"https://{HOST}/vnc.html?a=1&streamspace_access=TOKEN"},
        ("https", HOST, "TOKEN"),
    ),
    "ingress-nginx without query": ({"X-Original-URL": f"http://{HOST}:8080/"}, ("http", HOST, None)),
    "traefik": (
        {
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": HOST.upper(),
            "X-Forwarded-Uri": "/websockify?streamspace_access=T2",
        },
        ("https", HOST, "T2"),
    ),
    "X-Original-URL wins": (
        {"X-Original-URL": f"https://{HOST}/", "X-Forwarded-Host": "other.example"},
        ("https", HOST, None),
    ),
    "userinfo is not the host": ({"X-Original-URL": f"http://{HOST}@evil.example/"},
                                 ("http", "evil.example", None)),
    "nothing": ({}, ("http", "", None)),
    "broken URL": ({"X-Original-URL": "http://[::1/"}, ("http", "", None)),
    "too many query fields": (
        {"X-Original-URL": f"http://{HOST}/?" + "&".join(f"a{i}=1" for i in range(100))},
        ("http", "", None),
    ),
}  # fmt: skip


@pytest.mark.parametrize(("headers", "expected"), ORIGINALS.values(), ids=ORIGINALS)
def test_original_request(headers: dict[str, str], expected: tuple[str, str, str | None]) -> None:
    original = original_request(headers)
    assert (original.scheme, original.host, original.query_token) == expected
