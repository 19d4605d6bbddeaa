"""A local OpenID Connect issuer for tests, on loopback.

It serves what a real issuer serves to us: the discovery document, the key set, the
authorization endpoint (which signs in ``next_user`` at once, as an issuer does for a browser
already signed in there) and the token endpoint, which checks the code (single use), the client,
the redirect URI and the PKCE verifier (S256) before it issues an RS256 ID token with the nonce.
It counts requests and can be made to fail. ``IssuerThread`` runs one on a loop of its own for
tests that are not async (a facade thread, a browser).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

AUDIENCE = "streamspace"


@dataclass
class Grant:
    """What an authorization request left for the token request to check."""

    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str | None
    user: str


class Issuer:
    """A local OIDC issuer, counting requests, able to fail."""

    def __init__(self, client_id: str = AUDIENCE, client_secret: str | None = None) -> None:
        self.keys: dict[str, rsa.RSAPrivateKey] = {}
        self.hits = {"discovery": 0, "jwks": 0}  # and "authorize", "token" once used
        self.failing = False
        self.delay = 0.0
        self.server: TestServer | None = None
        self.client_id = client_id
        self.client_secret = client_secret
        self.next_user = "alice"
        self.claims: dict[str, Any] = {}  # added to every ID token (groups, a wrong nonce...)
        self.grants: dict[str, Grant] = {}

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.port}/realms/test"

    def rotate(self, kid: str) -> rsa.RSAPrivateKey:
        """Publish only a new key, as an issuer does when it rotates."""
        self.keys = {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048)}
        return self.keys[kid]

    def token(self, kid: str | None = None, **claims: Any) -> str:
        kid = kid or next(iter(self.keys))
        now = datetime.now(UTC)
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + timedelta(hours=1),
            **claims,
        }
        key = self.keys.get(kid) or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})

    async def _answer(self, what: str, body: dict[str, Any], status: int = 200) -> web.Response:
        self.hits[what] = self.hits.get(what, 0) + 1
        await asyncio.sleep(self.delay)
        if self.failing:
            return web.json_response({"error": "down"}, status=503)
        return web.json_response(body, status=status)

    async def discovery(self, request: web.Request) -> web.Response:
        return await self._answer(
            "discovery",
            {
                "issuer": self.url,
                "jwks_uri": f"{self.url}/jwks",
                "authorization_endpoint": f"{self.url}/auth",
                "token_endpoint": f"{self.url}/token",
            },
        )

    async def jwks(self, request: web.Request) -> web.Response:
        keys = [
            {**RSAAlgorithm.to_jwk(k.public_key(), as_dict=True), "kid": kid, "alg": "RS256"}
            for kid, k in self.keys.items()
        ]
        return await self._answer("jwks", {"keys": keys})

    async def authorize(self, request: web.Request) -> web.Response:
        self.hits["authorize"] = self.hits.get("authorize", 0) + 1
        q = request.query
        if (
            q.get("response_type") != "code"
            or q.get("client_id") != self.client_id
            or q.get("code_challenge_method") != "S256"
            or not q.get("code_challenge")
            or not q.get("redirect_uri")
        ):
            return web.json_response({"error": "invalid_request"}, status=400)
        code = secrets.token_urlsafe(16)
        self.grants[code] = Grant(
            q["client_id"], q["redirect_uri"], q["code_challenge"], q.get("nonce"), self.next_user
        )
        back = {"code": code, **({"state": q["state"]} if "state" in q else {})}
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode(back)}")

    async def exchange(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant = self.grants.pop(str(form.get("code", "")), None)  # a code is used once
        verifier = str(form.get("code_verifier", ""))
        digest = hashlib.sha256(verifier.encode()).digest()
        proof = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        if (
            form.get("grant_type") != "authorization_code"
            or grant is None
            or form.get("client_id") != grant.client_id
            or form.get("redirect_uri") != grant.redirect_uri
            or proof != grant.challenge
            or (self.client_secret is not None and form.get("client_secret") != self.client_secret)
        ):
            return await self._answer("token", {"error": "invalid_grant"}, status=400)
        nonce = {"nonce": grant.nonce} if grant.nonce else {}
        id_token = self.token(sub=grant.user, aud=grant.client_id, **{**nonce, **self.claims})
        body = {"id_token": id_token, "access_token": "opaque", "token_type": "Bearer"}
        return await self._answer("token", body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/realms/test/.well-known/openid-configuration", self.discovery)
        app.router.add_get("/realms/test/jwks", self.jwks)
        app.router.add_get("/realms/test/auth", self.authorize)
        app.router.add_post("/realms/test/token", self.exchange)
        self.server = TestServer(app, host="127.0.0.1", port=0)
        await self.server.start_server()


class IssuerThread:
    """An ``Issuer`` serving from a thread of its own, for tests that block."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Issuer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.issuer.start(), self.loop).result(30)
        return self.issuer

    def __exit__(self, *_: object) -> None:
        server = self.issuer.server
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
