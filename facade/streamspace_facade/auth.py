"""Who is calling: an ``Authorization: Bearer`` header turned into a ``Principal``.

The credential is either an API key (``sk_...``, looked up by its SHA-256 hash in PostgreSQL, the
answer kept for ``API_KEY_CACHE_TTL`` by ``KeyCache``) or a JWT: HS256 with ``JWT_SECRET``, or
signed by the OIDC issuer's keys. Verification itself is in ``streamspace.auth.tokens``; this
module does the I/O around it: the key lookup (through the storage layer's ``ApiKeyStore``), and
fetching the issuer's key set (discovery document, then ``jwks_uri``) with a cache shared by all
requests.

Failures leave as 401 with a short message that never repeats the credential, or as 503 when the
database or the identity provider cannot be reached, so clients retry instead of logging out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from streamspace.auth.apikeys import PREFIX, hash_key
from streamspace.auth.tokens import (
    ASYMMETRIC_ALGORITHMS,
    Claims,
    TokenError,
    UnknownKeyError,
    header_algorithm,
    verify,
)
from streamspace.config import AuthSettings
from streamspace_facade.errors import unauthorized, unavailable
from streamspace_facade.principal import Principal
from streamspace_facade.storage import StorageUnavailable
from streamspace_facade.storage.apikeys import ApiKeyStore, KeyOwner
from streamspace_facade.storage.users import Seen
from streamspace_facade.users import Directory

log = logging.getLogger(__name__)

DB_TIMEOUT = 2.0
"""Seconds to wait for a pooled connection before answering 503."""
HTTP_TIMEOUT = aiohttp.ClientTimeout(total=5)
JWKS_TTL = 300.0
"""Seconds a fetched key set is used before it is fetched again."""
REFETCH_INTERVAL = 30.0
"""An unknown ``kid`` refetches the key set at most this often (keys rotate; attackers probe)."""
RETRY_INTERVAL = 5.0
"""After a failed fetch, requests fail fast (or use the old set) for this long."""


MAX_CACHED_KEYS = 10_000
"""Keys one process remembers; past this the oldest entries go (they are looked up again)."""


class KeyCache:
    """Valid API keys this process has looked up, by hash (never the key itself), each trusted
    for at most ``ttl`` seconds and never past its own expiry (decision 151). Failed lookups are
    not kept, so a key created a moment ago works at once; a key revoked through this process is
    dropped at once (``forget``)."""

    def __init__(self, ttl: float, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self._clock = clock
        self._entries: dict[str, tuple[KeyOwner, float]] = {}
        self.generation = 0
        """Counts revocations: a lookup that began before one is not kept (it may have read
        the key just before the revocation committed)."""

    def get(self, digest: str) -> KeyOwner | None:
        found = self._entries.get(digest)
        if found is None:
            return None
        if self._clock() >= found[1]:
            del self._entries[digest]
            return None
        return found[0]

    def put(self, digest: str, owner: KeyOwner, generation: int) -> None:
        """Keep what a lookup begun at ``generation`` found."""
        lifetime = self.ttl if owner.valid_for is None else min(self.ttl, owner.valid_for)
        if lifetime <= 0 or generation != self.generation:
            return
        if len(self._entries) >= MAX_CACHED_KEYS:
            now = self._clock()
            self._entries = {d: e for d, e in self._entries.items() if e[1] > now}
            while len(self._entries) >= MAX_CACHED_KEYS:
                del self._entries[next(iter(self._entries))]
        self._entries[digest] = (owner, self._clock() + lifetime)

    def forget_user(self, user: str) -> None:
        """Drop every key of ``user`` (deleted, with their keys)."""
        self.generation += 1
        self._entries = {d: e for d, e in self._entries.items() if e[0].user_id != user}

    def forget(self, key_id: int) -> None:
        """Drop the key of id ``key_id`` (just revoked)."""
        self.generation += 1
        self._entries = {d: e for d, e in self._entries.items() if e[0].id != key_id}


class BadDocumentError(ValueError):
    """The identity provider answered with something other than the expected document."""


class Authenticator:
    """Authenticates requests; one per application, shared by every request."""

    def __init__(
        self,
        settings: AuthSettings,
        keys: ApiKeyStore | None,
        http: aiohttp.ClientSession,
        *,
        users: Directory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        """The users table (None without a database): groups, disabled users, ``user.*``."""
        self._settings = settings
        self._keys = keys
        self._http = http
        self._clock = clock
        self._lock = asyncio.Lock()
        self._jwks: jwt.PyJWKSet | None = None
        self._discovery: dict[str, Any] | None = None
        self._fresh_until = 0.0
        self._refetch_after = 0.0
        self._retry_after = 0.0
        self._attempts = 0
        self._last_failed = False
        self.keys = KeyCache(settings.api_key_cache_ttl.total_seconds(), clock)

    async def authenticate(self, authorization: str | None) -> Principal:
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if not scheme:
            raise unauthorized("authentication required")
        if scheme.lower() != "bearer" or not credential:
            raise unauthorized("expected Authorization: Bearer <token or API key>")
        if credential.startswith(PREFIX):
            who, seen = await self._api_key(credential)
        else:
            who, seen = await self._jwt(credential)
        return who if self.users is None else await self.users.admit(who, seen)

    async def _api_key(self, key: str) -> tuple[Principal, Seen]:
        if self._keys is None:
            raise unavailable("database unavailable")
        digest = hash_key(key)
        owner = self.keys.get(digest)
        if owner is None:
            generation = self.keys.generation
            try:
                owner = await self._keys.owner(digest, wait=DB_TIMEOUT)
            except StorageUnavailable as exc:
                log.warning("API key lookup failed: %s", type(exc.__cause__).__name__)
                raise unavailable("database unavailable") from None
            if owner is None:
                raise unauthorized("API key revoked or unknown")
            self.keys.put(digest, owner, generation)
        seen = Seen(owner.user_id, owner.role, groups=None)
        return Principal(user=owner.user_id, role=owner.role, via="apikey"), seen

    async def _jwt(self, token: str) -> tuple[Principal, Seen]:
        oidc = self._settings.oidc_issuer is not None
        try:
            if oidc and header_algorithm(token) in ASYMMETRIC_ALGORITHMS:
                keys = await self._signing_keys()
                try:
                    claims = self._verify(token, keys)
                except UnknownKeyError:
                    fresh = await self._after_unknown_key(keys)
                    if fresh is None:
                        raise
                    claims = self._verify(token, fresh)
            else:
                claims = self._verify(token, None)
        except TokenError as exc:
            raise unauthorized(str(exc)) from None
        seen = Seen(claims.user, claims.role, claims.groups, claims.email, claims.display_name)
        return Principal(user=claims.user, role=claims.role, via="jwt"), seen

    def _verify(self, token: str, keys: jwt.PyJWKSet | None) -> Claims:
        return verify(token, self._settings, keys)

    async def _signing_keys(self) -> jwt.PyJWKSet:
        """The issuer's key set: the cached one while fresh, else fetched by one request."""
        now = self._clock()
        if self._jwks is not None and now < self._fresh_until:
            return self._jwks
        if now >= self._retry_after:
            seen = self._attempts
            async with self._lock:
                if self._attempts == seen:  # nobody fetched while this request waited
                    await self._fetch()
        if self._jwks is None:  # a stale set beats none while the issuer is unreachable
            raise unavailable("identity provider unavailable")
        return self._jwks

    async def _after_unknown_key(self, used: jwt.PyJWKSet) -> jwt.PyJWKSet | None:
        """A newer key set after a token named an unknown key, or None if none may be fetched."""
        if self._jwks is not used:
            return self._jwks
        now = self._clock()
        if now < self._refetch_after or now < self._retry_after:
            return None
        seen = self._attempts
        async with self._lock:
            if self._attempts == seen:
                await self._fetch()
        if self._jwks is used:
            if self._last_failed:
                raise unavailable("identity provider unavailable")
            return None
        return self._jwks

    async def _fetch(self) -> None:
        """Fetch the key set; on failure keep the old one and hold off retries for a while."""
        try:
            keys = await self._download_keys()
        except (aiohttp.ClientError, TimeoutError, ValueError, jwt.PyJWTError) as exc:
            log.warning("cannot fetch the signing keys of %s: %s", self._settings.oidc_issuer, exc)
            self._discovery = None  # read the discovery document again next time
            self._retry_after = self._clock() + RETRY_INTERVAL
            self._last_failed = True
        else:
            now = self._clock()
            self._jwks = keys
            self._fresh_until = now + JWKS_TTL
            self._refetch_after = now + REFETCH_INTERVAL
            self._last_failed = False
            log.info("fetched %d signing key(s) of %s", len(keys.keys), self._settings.oidc_issuer)
        self._attempts += 1  # counted only when done: waiters on a cancelled fetch try again

    async def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document, fetched once (again after a failed key fetch)."""
        if self._discovery is None:
            issuer = self._settings.oidc_issuer or ""
            self._discovery = await self._get_json(
                issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
        return self._discovery

    async def _download_keys(self) -> jwt.PyJWKSet:
        uri = (await self.discovery()).get("jwks_uri")
        if not isinstance(uri, str) or not uri:
            self._discovery = None
            raise BadDocumentError("the discovery document has no jwks_uri")
        return jwt.PyJWKSet.from_dict(await self._get_json(uri))

    async def _get_json(self, url: str) -> dict[str, Any]:
        async with self._http.get(
            url, timeout=HTTP_TIMEOUT, headers={"Accept": "application/json"}
        ) as resp:
            resp.raise_for_status()
            data = await resp.json(content_type=None)
        if not isinstance(data, dict):
            raise BadDocumentError(f"{url} did not return a JSON object")
        return data
