"""A browser signed in: a credential exchanged for a session cookie (issue 18).

The web console never keeps a token where its scripts can read it. ``POST /api/v1/auth/session``
checks a credential (an API key or a JWT, exactly as an ``Authorization: Bearer`` header is
checked) and answers with the cookie ``streamspace_session`` holding it: HttpOnly, SameSite=Strict,
``Path=/``, Secure when the request came over TLS, no expiry of its own (it ends with the browser,
or earlier with the credential). From then on the browser sends it with every same-origin request
and WebSocket upgrade, and the credential is checked on each request as a bearer token is: a
revoked key or an expired token ends the browser's session too (``GET /api/v1/me`` tells whom
the browser is signed in as, 401 when nobody). ``DELETE`` clears the cookie;
the credential itself stays what it was (an API key is revoked with the keys API).

Cross-site request forgery: SameSite=Strict keeps the cookie off cross-site requests, and a
cookie-authenticated request that may change something (any method but GET, HEAD, OPTIONS) must
also carry ``X-Requested-With: streamspace``, which a cross-site form cannot send and a script of
another origin can send only after a CORS preflight, which the facade answers only for
``CORS_ALLOWED_ORIGINS``. Signing in asks for the header too (no signing a victim's browser into
someone else's account). WebSocket upgrades are checked by their ``Origin`` (``ws``).
"""

from __future__ import annotations

from aiohttp import web

from streamspace_facade.errors import forbidden
from streamspace_facade.responses import json_response
from streamspace_facade.state import PRINCIPAL, Fields, json_body, services

PATH = "/api/v1/auth/session"
COOKIE = "streamspace_session"
CSRF_HEADER = "X-Requested-With"
CSRF_VALUE = "streamspace"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_CREDENTIAL = 8192
"""Characters a credential may have (a JWT with many claims is a few KB; browsers keep cookies
up to about 4 KB, so a longer one could not be kept anyway)."""


def _forged(request: web.Request) -> bool:
    return request.headers.get(CSRF_HEADER) != CSRF_VALUE


def cookie_credential(request: web.Request) -> str | None:
    """``Bearer <credential>`` from the session cookie, or None without one; 403 for a request
    that may change something and lacks the console's header (a forged cross-site request)."""
    credential = request.cookies.get(COOKIE)
    if not credential:
        return None
    if request.method not in SAFE_METHODS and _forged(request):
        raise forbidden(f"a request signed in by cookie must send {CSRF_HEADER}: {CSRF_VALUE}")
    return f"Bearer {credential}"


async def sign_in(request: web.Request) -> web.Response:
    if _forged(request):
        raise forbidden(f"signing in needs the header {CSRF_HEADER}: {CSRF_VALUE}")
    fields = Fields(await json_body(request), {"token"})
    token = fields.get(
        "token",
        str,
        required=True,
        check=lambda t: (
            None
            if 0 < len(t) <= MAX_CREDENTIAL and t.isascii() and t.isprintable() and " " not in t
            else f"must be an API key or a token (printable ASCII, at most {MAX_CREDENTIAL})"
        ),
    )
    fields.done()
    auth = services(request).auth
    principal = await auth.authenticate(f"Bearer {token}")
    request[PRINCIPAL] = principal  # the sign-in is audited as this user's
    if auth.users is not None:
        await auth.users.logged_in(principal.user)
    response = json_response(principal.view)
    set_session_cookie(request, response, token)
    return response


def set_session_cookie(request: web.Request, response: web.StreamResponse, credential: str) -> None:
    """The browser's session from now on: ``credential``, checked on each request."""
    response.set_cookie(
        COOKIE, credential, path="/", httponly=True, secure=request.secure, samesite="Strict"
    )


async def sign_out(request: web.Request) -> web.Response:
    """Always succeeds (an expired credential must not keep a browser from signing out)."""
    response = web.Response(status=204)
    response.del_cookie(COOKIE, path="/", secure=request.secure, httponly=True, samesite="Strict")
    return response


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(PATH, sign_in)
    router.add_delete(PATH, sign_out)
