"""Signing in to the console at the OIDC issuer, in Chromium (issue 18, decision 164).

The stack's facade is configured with the loopback issuer of ``oidc_testing`` (which signs in
``next_user`` at once, checks the client, redirect URI, code and PKCE verifier, and puts the
nonce in the ID token). The browser follows the real redirects: the console's link, the
facade's ``/api/v1/auth/oidc/login``, the issuer, the facade's callback, the console again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from browser_testing import find, shown, text_is, wait_for
from console_testing import FAST, Console
from oidc_testing import AUDIENCE, Issuer, IssuerThread

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

COOKIE = "streamspace_session"


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    idp = Issuer()
    idp.rotate("key-1")
    idp.next_user = "carol"
    with IssuerThread(idp) as running:
        yield running


@pytest.fixture
def stack_env(issuer: Issuer) -> dict[str, str]:
    """The console's stack, its facade trusting the loopback issuer."""
    return {**FAST, "OIDC_ISSUER": issuer.url, "OIDC_AUDIENCE": AUDIENCE}


def test_signing_in_at_the_issuer(console: Console, browser: WebDriver, issuer: Issuer) -> None:
    browser.get(console.url)
    wait_for(browser, shown("#api-key"), message="the sign-in page")
    find(browser, "[data-testid=sign-in-oidc]").click()
    wait_for(browser, text_is("[data-testid=whoami]", "carol"), message="signed in as carol")
    wait_for(browser, text_is("[data-testid=live]", "live"), message="the sessions stream open")
    assert issuer.hits.get("token") == 1  # the facade exchanged the code, once
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie").find(COOKIE) == -1
    assert browser.current_url.startswith(console.url.rstrip("/"))  # back on the console
