"""A browser signed in at the OIDC issuer: the authorization-code flow with PKCE (issue 18).

The facade is the issuer's client (a backend for the console), so the page never holds a code
or a token, and the console's Content-Security-Policy can keep ``connect-src 'self'``:

* ``GET /api/v1/auth/oidc/login`` sends the browser to the issuer's ``authorization_endpoint``
  with a fresh ``state``, ``nonce`` and S256 ``code_challenge``. The three secrets travel in
  the cookie ``streamspace_oidc``: HttpOnly, ``SameSite=Lax`` (it must come back with the
  issuer's top-level redirect), ``Path=/api/v1/auth/oidc``, ten minutes, and signed with a key
  derived from the facade's access key, so a cookie planted by a sibling host cannot carry an
  attacker's own state and verifier.
* ``GET /api/v1/auth/oidc/callback?code=&state=`` compares ``state`` with the cookie's (a
  callback this browser did not start, as in a login CSRF, has no cookie or another state),
  exchanges the code at the ``token_endpoint`` with the verifier (and ``OIDC_CLIENT_SECRET``,
  ``client_secret_post``, when set), verifies the ID token as every bearer token is verified
  (the issuer's keys, issuer, ``OIDC_AUDIENCE``, expiry) and compares its ``nonce``. The ID
  token then becomes the browser's ``streamspace_session`` cookie (``signin``) and the browser
  goes to ``/``.

No refresh token is kept: when the ID token expires the console asks the user to sign in again
(at the issuer, usually without a prompt). Failures are JSON errors like the rest of the API.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
from aiohttp import web

from streamspace.config import AuthSettings
from streamspace_facade.errors import ApiError, bad_request, unauthorized, unavailable
from streamspace_facade.responses import json_response
from streamspace_facade.signin import set_session_cookie
from streamspace_facade.state import PRINCIPAL, Services, services

log = logging.getLogger(__name__)

METHODS = "/api/v1/auth/methods"
LOGIN = "/api/v1/auth/oidc/login"
CALLBACK = "/api/v1/auth/oidc/callback"
STATE_COOKIE = "streamspace_oidc"
STATE_PATH = "/api/v1/auth/oidc"
STATE_TTL = 600
"""Seconds a browser has at the issuer before its sign-in must start again."""
TOKEN_TIMEOUT = aiohttp.ClientTimeout(total=10)


def configured(auth: AuthSettings) -> bool:
    return bool(auth.oidc_issuer and auth.oidc_client_id)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def challenge(verifier: str) -> str:
    """The S256 code challenge of ``verifier`` (RFC 7636 §4.2)."""
    return _b64(hashlib.sha256(verifier.encode()).digest())


def _mac(key: bytes, value: str) -> str:
    derived = hmac.new(key, b"streamspace oidc state", hashlib.sha256).digest()
    return _b64(hmac.new(derived, value.encode(), hashlib.sha256).digest())


def seal(key: bytes, state: str, verifier: str, nonce: str) -> str:
    value = f"{state}.{verifier}.{nonce}"
    return f"{value}.{_mac(key, value)}"


def unseal(key: bytes, sealed: str) -> tuple[str, str, str] | None:
    """(state, verifier, nonce) of a cookie this facade made, else None."""
    parts = sealed.split(".")
    if len(parts) != 4:
        return None
    value = ".".join(parts[:3])
    if not hmac.compare_digest(parts[3], _mac(key, value)):
        return None
    return parts[0], parts[1], parts[2]


def redirect_uri(request: web.Request) -> str:
    """The callback as the browser reaches it (a TLS-terminating proxy says https)."""
    scheme = "https" if request.headers.get("X-Forwarded-Proto") == "https" else request.scheme
    return f"{scheme}://{request.host}{CALLBACK}"


def _configured(request: web.Request) -> tuple[Services, AuthSettings]:
    """The services and auth settings, or 404 when no issuer is configured."""
    svc = services(request)
    if not configured(svc.settings.auth):
        raise ApiError(404, "NOT_FOUND", "OIDC sign-in is not configured (OIDC_ISSUER)")
    return svc, svc.settings.auth


async def _endpoint(request: web.Request, name: str) -> str:
    svc = services(request)
    try:
        document = await svc.auth.discovery()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("cannot read the discovery document of the OIDC issuer: %s", exc)
        raise unavailable("identity provider unavailable") from None
    url = document.get(name)
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise unavailable(f"the identity provider's discovery document has no {name}")
    return url


async def login(request: web.Request) -> web.Response:
    svc, auth = _configured(request)
    authorize = await _endpoint(request, "authorization_endpoint")
    state, verifier, nonce = (secrets.token_urlsafe(32) for _ in range(3))
    query = {
        "response_type": "code",
        "client_id": auth.oidc_client_id,
        "redirect_uri": redirect_uri(request),
        "scope": auth.oidc_scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge(verifier),
        "code_challenge_method": "S256",
    }
    separator = "&" if "?" in authorize else "?"
    response = web.Response(
        status=302, headers={"Location": authorize + separator + urlencode(query)}
    )
    response.set_cookie(
        STATE_COOKIE,
        seal(svc.access_key, state, verifier, nonce),
        path=STATE_PATH,
        max_age=STATE_TTL,
        httponly=True,
        secure=request.secure,
        samesite="Lax",
    )
    return response


async def callback(request: web.Request) -> web.Response:
    svc, _ = _configured(request)
    if "error" in request.query:
        raise unauthorized(f"the identity provider refused the sign-in: {request.query['error']}")
    kept = unseal(svc.access_key, request.cookies.get(STATE_COOKIE, ""))
    code, state = request.query.get("code", ""), request.query.get("state", "")
    if kept is None:
        raise bad_request("no sign-in was started in this browser (or it took over ten minutes)")
    expected_state, verifier, nonce = kept
    if not code or not hmac.compare_digest(state, expected_state):
        raise bad_request("this sign-in does not match the one started in this browser")
    id_token = await _exchange(request, code, verifier)
    principal = await svc.auth.authenticate(f"Bearer {id_token}")
    if _claims(id_token).get("nonce") != nonce:
        raise unauthorized("the ID token was not issued for this sign-in (nonce)")
    request[PRINCIPAL] = principal  # audited as this user's sign-in
    if svc.auth.users is not None:
        await svc.auth.users.logged_in(principal.user)
    response = web.Response(status=302, headers={"Location": "/"})
    response.del_cookie(STATE_COOKIE, path=STATE_PATH, secure=request.secure, httponly=True)
    set_session_cookie(request, response, id_token)
    return response


async def _exchange(request: web.Request, code: str, verifier: str) -> str:
    """The ID token the issuer gives for ``code``."""
    svc = services(request)
    auth = svc.settings.auth
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri(request),
        "client_id": auth.oidc_client_id or "",
        "code_verifier": verifier,
    }
    if auth.oidc_client_secret:
        form["client_secret"] = auth.oidc_client_secret
    url = await _endpoint(request, "token_endpoint")
    if svc.http is None:
        raise unavailable("the facade is starting")
    try:
        async with svc.http.post(
            url, data=form, timeout=TOKEN_TIMEOUT, headers={"Accept": "application/json"}
        ) as reply:
            answer = await reply.json(content_type=None)
            status = reply.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("the OIDC token endpoint could not be used: %s", exc)
        raise unavailable("identity provider unavailable") from None
    if status >= 500:
        raise unavailable("identity provider unavailable")
    if status != 200 or not isinstance(answer, dict):
        error = answer.get("error") if isinstance(answer, dict) else None
        raise unauthorized(f"the identity provider refused the code: {error or status}")
    token = answer.get("id_token")
    if not isinstance(token, str) or not token:
        raise unauthorized("the identity provider gave no ID token (is 'openid' in OIDC_SCOPES?)")
    return token


def _claims(token: str) -> dict[str, Any]:
    """The payload of a token whose signature has been verified already."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


async def methods(request: web.Request) -> web.Response:
    """How a browser may sign in here: always with an API key or token, and at the issuer
    when it is configured (the console shows the choices)."""
    oidc = configured(services(request).settings.auth)
    return json_response({"token": True, "oidc": oidc, "oidcLogin": LOGIN if oidc else None})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get(METHODS, methods)
    router.add_get(LOGIN, login)
    router.add_get(CALLBACK, callback)
