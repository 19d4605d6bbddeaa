"""The facade's Authenticator: API keys in a real PostgreSQL, OIDC keys from a local issuer."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import jwt
import psycopg
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric import rsa
from psycopg_pool import AsyncConnectionPool

from oidc_testing import AUDIENCE, Issuer
from streamspace.auth import apikeys
from streamspace.auth.tokens import mint_hs256
from streamspace.config import AuthSettings
from streamspace.db.migrate import migrate
from streamspace_facade.auth import Authenticator
from streamspace_facade.errors import ApiError
from streamspace_facade.principal import Principal
from streamspace_facade.storage import Database
from streamspace_facade.storage.apikeys import ApiKeyStore

pytestmark = pytest.mark.integration

SECRET = "integration-secret-of-32-bytes!!"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(database: str) -> str:
    migrate(database)
    return database


@pytest_asyncio.fixture
async def pool(db: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(db, open=False, kwargs={"autocommit": True}) as p:
        yield p


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def issuer() -> AsyncIterator[Issuer]:
    idp = Issuer()
    idp.rotate("key-1")
    await idp.start()
    assert idp.server is not None
    try:
        yield idp
    finally:
        await idp.server.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def create_key(url: str, user: str = "alice", role: str = "operator") -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        return apikeys.create_api_key(conn, user, role, "test")


def keys(pool: AsyncConnectionPool) -> ApiKeyStore:
    """The storage layer's key store on the test's pool."""
    return ApiKeyStore(Database(pool))


def sql(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def oidc_settings(issuer: Issuer, audience: str = AUDIENCE) -> AuthSettings:
    return AuthSettings(
        oidc_issuer=issuer.url,
        oidc_audience=audience,
        oidc_role_groups=(("ops-team", "operator"), ("platform-admins", "admin")),
    )


async def refused(auth: Authenticator, header: str | None, status: int, message: str) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await auth.authenticate(header)
    assert caught.value.status == status
    assert caught.value.code == ("UNAUTHORIZED" if status == 401 else "UNAVAILABLE")
    assert message in caught.value.message
    credential = (header or "").partition(" ")[2].strip()
    assert not credential or credential not in caught.value.message
    return caught.value


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    yield port


# API keys


@pytest.mark.asyncio
async def test_a_valid_key_gives_its_user_and_role(
    db: str, pool: AsyncConnectionPool, http: aiohttp.ClientSession
) -> None:
    key = create_key(db, "alice", "operator")
    auth = Authenticator(AuthSettings(), keys(pool), http)
    assert await auth.authenticate(f"Bearer {key}") == Principal("alice", "operator", "apikey")
    assert (await auth.authenticate(f"bearer  {key} ")).user == "alice"


@pytest.mark.asyncio
async def test_revoked_unknown_and_expired_keys_are_refused(
    db: str, pool: AsyncConnectionPool, http: aiohttp.ClientSession
) -> None:
    auth = Authenticator(AuthSettings(), keys(pool), http)
    revoked, expired, later = create_key(db), create_key(db), create_key(db)
    sql(db, "UPDATE api_keys SET revoked_at = now() WHERE key_hash = %s", apikeys.hash_key(revoked))
    for key, offset in ((expired, "-1 hour"), (later, "1 hour")):
        sql(
            db,
            "UPDATE api_keys SET expires_at = now() + %s::interval WHERE key_hash = %s",
            offset,
            apikeys.hash_key(key),
        )

    await refused(auth, f"Bearer {revoked}", 401, "API key revoked or unknown")
    await refused(auth, f"Bearer {apikeys.new_key()}", 401, "API key revoked or unknown")
    await refused(auth, f"Bearer {expired}", 401, "API key revoked or unknown")
    assert (await auth.authenticate(f"Bearer {later}")).via == "apikey"


@pytest.mark.asyncio
async def test_last_used_at_is_written_at_most_once_a_minute(
    db: str, pool: AsyncConnectionPool, http: aiohttp.ClientSession
) -> None:
    key = create_key(db)
    # without the key cache: every request looks the key up (and may record its use)
    auth = Authenticator(AuthSettings(api_key_cache_ttl=timedelta(0)), keys(pool), http)
    digest = apikeys.hash_key(key)
    assert sql(db, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", digest) == [(None,)]

    await auth.authenticate(f"Bearer {key}")
    [(first,)] = sql(db, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", digest)
    assert first is not None
    await auth.authenticate(f"Bearer {key}")
    assert sql(db, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", digest) == [(first,)]

    sql(
        db,
        "UPDATE api_keys SET last_used_at = now() - interval '2 minutes' WHERE key_hash = %s",
        digest,
    )
    await auth.authenticate(f"Bearer {key}")
    [(touched,)] = sql(db, "SELECT last_used_at FROM api_keys WHERE key_hash = %s", digest)
    assert touched >= first


@pytest.mark.asyncio
async def test_an_unreachable_database_is_503(
    closed_port: int, http: aiohttp.ClientSession
) -> None:
    url = f"host=127.0.0.1 port={closed_port} dbname=x user=x connect_timeout=1"
    async with AsyncConnectionPool(url, open=False) as unreachable:
        auth = Authenticator(AuthSettings(), keys(unreachable), http)
        await refused(auth, f"Bearer {apikeys.new_key()}", 503, "database unavailable")
    await refused(
        Authenticator(AuthSettings(), None, http), f"Bearer {apikeys.new_key()}", 503, "database"
    )


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer  ", "Basic YWxpY2U6cHc=", "ApiKey sk_abc", "sk_abc"],
)
@pytest.mark.asyncio
async def test_missing_or_foreign_headers_are_refused(
    header: str | None, http: aiohttp.ClientSession
) -> None:
    await refused(Authenticator(AuthSettings(jwt_secret=SECRET), None, http), header, 401, "")


# JWTs


@pytest.mark.asyncio
async def test_hs256_tokens_need_jwt_secret(http: aiohttp.ClientSession) -> None:
    token = mint_hs256(SECRET, "bob", "admin", timedelta(hours=1))
    auth = Authenticator(AuthSettings(jwt_secret=SECRET), None, http)
    assert await auth.authenticate(f"Bearer {token}") == Principal("bob", "admin", "jwt")
    await refused(
        Authenticator(AuthSettings(), None, http), f"Bearer {token}", 401, "invalid token"
    )
    expired = mint_hs256(
        SECRET, "bob", "admin", timedelta(hours=1), now=datetime.now(UTC) - timedelta(hours=2)
    )
    await refused(auth, f"Bearer {expired}", 401, "token expired")


@pytest.mark.asyncio
async def test_oidc_token_accepted_and_audience_checked(
    issuer: Issuer, http: aiohttp.ClientSession
) -> None:
    auth = Authenticator(oidc_settings(issuer), None, http)
    principal = await auth.authenticate(f"Bearer {issuer.token(groups=['ops-team'])}")
    assert principal == Principal("alice", "operator", "jwt")
    await refused(auth, f"Bearer {issuer.token(aud='other')}", 401, "wrong audience")
    await refused(auth, f"Bearer {issuer.token(iss='http://evil.example')}", 401, "wrong issuer")
    # OIDC configured, no JWT_SECRET: HS256 is refused without touching the issuer again.
    hs = mint_hs256(SECRET, "bob", "admin", timedelta(hours=1))
    await refused(auth, f"Bearer {hs}", 401, "HS256 tokens are not accepted")
    assert issuer.hits == {"discovery": 1, "jwks": 1}
    other = Authenticator(oidc_settings(issuer, audience="another-app"), None, http)
    await refused(other, f"Bearer {issuer.token()}", 401, "wrong audience")


@pytest.mark.asyncio
async def test_attack_oidc_claims_cannot_rename_or_promote_the_caller(
    issuer: Issuer, http: aiohttp.ClientSession
) -> None:
    """Issuer-signed tokens whose user-shaped claims say alice and admin: mallory, a user."""
    auth = Authenticator(oidc_settings(issuer), None, http)
    forged = issuer.token(
        sub="mallory",
        preferred_username="alice",
        role="admin",
        roles=["admin"],
        groups=["admin", "operator"],
    )
    assert await auth.authenticate(f"Bearer {forged}") == Principal("mallory", "user", "jwt")
    admin = issuer.token(sub="mallory", groups=["platform-admins"])
    assert (await auth.authenticate(f"Bearer {admin}")).role == "admin"


@pytest.mark.asyncio
async def test_attack_hs256_token_with_another_issuer_is_refused(
    http: aiohttp.ClientSession,
) -> None:
    """Signed with JWT_SECRET (shared with some other service, say), but not issued by us."""
    now = datetime.now(UTC)
    claims = {"sub": "bob", "role": "admin", "iat": now, "exp": now + timedelta(hours=1)}
    auth = Authenticator(AuthSettings(jwt_secret=SECRET), None, http)
    for extra, problem in (({"iss": "billing"}, "wrong issuer"), ({}, "missing iss claim")):
        token = jwt.encode({**claims, **extra}, SECRET, algorithm="HS256")
        await refused(auth, f"Bearer {token}", 401, problem)
    ours = jwt.encode({**claims, "iss": "streamspace"}, SECRET, algorithm="HS256")
    assert await auth.authenticate(f"Bearer {ours}") == Principal("bob", "admin", "jwt")


@pytest.mark.asyncio
async def test_key_rotation_is_picked_up_after_a_refetch(
    issuer: Issuer, http: aiohttp.ClientSession, clock: Clock
) -> None:
    auth = Authenticator(oidc_settings(issuer), None, http, clock=clock)
    old = issuer.token()
    assert (await auth.authenticate(f"Bearer {old}")).user == "alice"
    issuer.rotate("key-2")
    new = issuer.token("key-2", sub="carol")

    # Right after a fetch an unknown kid does not refetch: probing cannot hammer the issuer.
    await refused(auth, f"Bearer {new}", 401, "unknown signing key")
    assert issuer.hits["jwks"] == 1

    clock.now += 31
    assert (await auth.authenticate(f"Bearer {new}")).user == "carol"
    assert issuer.hits == {"discovery": 1, "jwks": 2}
    await refused(auth, f"Bearer {old}", 401, "unknown signing key")
    for _ in range(5):
        await refused(auth, f"Bearer {issuer.token('forged')}", 401, "unknown signing key")
    assert issuer.hits["jwks"] == 2


@pytest.mark.asyncio
async def test_concurrent_requests_fetch_the_keys_once(
    issuer: Issuer, http: aiohttp.ClientSession
) -> None:
    issuer.delay = 0.2
    auth = Authenticator(oidc_settings(issuer), None, http)
    tokens = [issuer.token(sub=f"user-{i}") for i in range(20)]
    principals = await asyncio.gather(*(auth.authenticate(f"Bearer {t}") for t in tokens))
    assert [p.user for p in principals] == [f"user-{i}" for i in range(20)]
    assert issuer.hits == {"discovery": 1, "jwks": 1}


@pytest.mark.asyncio
async def test_an_unreachable_issuer_is_503_until_it_answers(
    issuer: Issuer, http: aiohttp.ClientSession, clock: Clock
) -> None:
    issuer.failing = True
    auth = Authenticator(oidc_settings(issuer), None, http, clock=clock)
    token = f"Bearer {issuer.token()}"
    await refused(auth, token, 503, "identity provider unavailable")
    await refused(auth, token, 503, "identity provider unavailable")
    assert issuer.hits["discovery"] == 1  # failures are not retried at once

    issuer.failing = False
    clock.now += 6
    assert (await auth.authenticate(token)).user == "alice"

    # Once the set is stale and the issuer down again, the old set keeps working.
    issuer.failing = True
    clock.now += 301
    assert (await auth.authenticate(token)).user == "alice"
    assert issuer.hits["jwks"] == 2


@pytest.mark.asyncio
async def test_a_closed_issuer_port_is_503(closed_port: int, http: aiohttp.ClientSession) -> None:
    settings = AuthSettings(oidc_issuer=f"http://127.0.0.1:{closed_port}", oidc_audience=AUDIENCE)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "alice"}, key, algorithm="RS256", headers={"kid": "k"})
    await refused(Authenticator(settings, None, http), f"Bearer {token}", 503, "identity provider")
