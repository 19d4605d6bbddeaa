"""Signing a browser in at the OIDC issuer: the authorization-code flow with PKCE (issue 18).

The facade runs for real; the issuer is ``oidc_testing.Issuer`` on loopback, which checks the
client, the redirect URI, single use of the code and the S256 verifier as an issuer does. A
browser is played by an aiohttp session with a cookie jar that follows no redirect by itself,
so each step is seen. The attacks: a code injected into a browser that started no sign-in
(login CSRF), a state that does not match, a tampered state cookie, a code replayed, an ID
token minted for another sign-in (nonce), the issuer refusing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from oidc_testing import AUDIENCE, Issuer, IssuerThread
from streamspace_facade.oidc_signin import CALLBACK, LOGIN, METHODS, STATE_COOKIE, challenge
from streamspace_facade.signin import COOKIE

pytestmark = pytest.mark.integration


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    idp = Issuer()
    idp.rotate("key-1")
    with IssuerThread(idp) as running:
        yield running


@pytest.fixture
def facade(start_facade: Callable[..., Any], issuer: Issuer) -> str:
    started = start_facade(OIDC_ISSUER=issuer.url, OIDC_AUDIENCE=AUDIENCE)
    return str(started.url)


def browser() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def cookie(http: aiohttp.ClientSession, name: str) -> str | None:
    found = [c.value for c in http.cookie_jar if c.key == name and c.value]
    return found[0] if found else None


async def to_issuer(http: aiohttp.ClientSession, base: str) -> str:
    """Start a sign-in; the issuer's redirect back (the callback URL with code and state)."""
    async with http.get(base + LOGIN, allow_redirects=False) as start:
        assert start.status == 302, await start.text()
        authorize = start.headers["Location"]
        sent = start.cookies[STATE_COOKIE]
        assert sent["httponly"] and sent["samesite"] == "Lax", sent
        assert sent["path"] == "/api/v1/auth/oidc"
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [AUDIENCE]
    assert query["redirect_uri"] == [base + CALLBACK]
    assert query["state"] and query["nonce"] and query["code_challenge"]
    async with http.get(authorize, allow_redirects=False) as at_issuer:
        assert at_issuer.status == 302, await at_issuer.text()
        return at_issuer.headers["Location"]


async def back(http: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with http.get(url, allow_redirects=False) as reply:
        body = await reply.json() if reply.status >= 400 else reply.headers.get("Location")
        return reply.status, body


def test_signing_in_at_the_issuer_sets_the_session_cookie(facade: str, issuer: Issuer) -> None:
    async def flow() -> None:
        async with browser() as http:
            async with http.get(facade + METHODS) as methods:
                assert await methods.json() == {"token": True, "oidc": True, "oidcLogin": LOGIN}
            callback = await to_issuer(http, facade)
            assert callback.startswith(facade + CALLBACK)
            async with http.get(callback, allow_redirects=False) as done:
                assert done.status == 302 and done.headers["Location"] == "/"
                session = done.cookies[COOKIE]
                assert session["httponly"] and session["samesite"] == "Strict"
            assert cookie(http, STATE_COOKIE) is None  # used once, then gone
            async with http.get(facade + "/api/v1/me") as me:
                assert {
                    k: v for k, v in (await me.json()).items() if k in ("user", "role", "via")
                } == {"user": "alice", "role": "user", "via": "jwt"}
            # the code is single use: the same callback again is refused
            status, error = await back(http, callback)
            assert status in (400, 401) and cookie(http, STATE_COOKIE) is None, error

    asyncio.run(flow())
    assert issuer.hits["token"] == 1


def test_attack_a_code_injected_into_a_browser_that_started_no_sign_in(
    facade: str, issuer: Issuer
) -> None:
    """Login CSRF: the attacker signs in at the issuer, then sends the victim to the callback
    with the attacker's code. The victim's browser has no state cookie: refused, no cookie."""

    async def flow() -> None:
        async with browser() as attacker:
            callback = await to_issuer(attacker, facade)
        async with browser() as victim:
            status, error = await back(victim, callback)
            assert status == 400, error
            assert "no sign-in was started" in error["error"]
            assert cookie(victim, COOKIE) is None

    asyncio.run(flow())
    assert "token" not in issuer.hits


def test_attack_a_state_of_another_sign_in_or_a_tampered_cookie(
    facade: str, issuer: Issuer
) -> None:
    async def flow() -> None:
        async with browser() as attacker:
            foreign = await to_issuer(attacker, facade)
        async with browser() as victim:
            await to_issuer(victim, facade)  # the victim's own sign-in is under way
            status, error = await back(victim, foreign)  # but the attacker's code and state
            assert status == 400 and "does not match" in error["error"], error
            # a cookie planted with the attacker's own verifier, keeping the victim's MAC
            state, _, nonce, mac = str(cookie(victim, STATE_COOKIE)).split(".")
            planted = f"{STATE_COOKIE}={state}.{challenge('mine')}.{nonce}.{mac}"
            code = parse_qs(urlsplit(foreign).query)["code"][0]
            forged = f"{facade}{CALLBACK}?code={code}&state={state}"
        async with (
            browser() as victim,
            victim.get(forged, headers={"Cookie": planted}, allow_redirects=False) as r,
        ):
            assert r.status == 400 and COOKIE not in r.cookies, await r.text()
            assert "no sign-in was started" in (await r.json())["error"]

    asyncio.run(flow())
    assert "token" not in issuer.hits


def test_attack_an_id_token_of_another_sign_in_and_the_issuer_refusing(
    facade: str, issuer: Issuer
) -> None:
    async def flow() -> None:
        issuer.claims = {"nonce": "from-another-sign-in"}
        async with browser() as http:
            status, error = await back(http, await to_issuer(http, facade))
            assert status == 401 and "nonce" in error["error"], error
            assert cookie(http, COOKIE) is None
        issuer.claims = {}
        async with browser() as http:
            await to_issuer(http, facade)
            status, error = await back(http, f"{facade}{CALLBACK}?error=access_denied")
            assert status == 401 and "access_denied" in error["error"], error
            assert cookie(http, COOKIE) is None

    asyncio.run(flow())


def test_without_an_issuer_there_is_no_oidc_sign_in(start_facade: Callable[..., Any]) -> None:
    url = str(start_facade().url)

    async def flow() -> None:
        async with browser() as http:
            async with http.get(url + METHODS) as methods:
                assert await methods.json() == {"token": True, "oidc": False, "oidcLogin": None}
            status, error = await back(http, url + LOGIN)
            assert status == 404 and "not configured" in error["error"], error

    asyncio.run(flow())
