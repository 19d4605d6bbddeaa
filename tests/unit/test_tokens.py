"""Bearer JWTs: HS256 and OIDC verification, algorithm confusion, claims to user and role."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from streamspace.auth.tokens import (
    Claims,
    TokenError,
    UnknownKeyError,
    header_algorithm,
    mint_hs256,
    verify,
)
from streamspace.cli import main

pytestmark = pytest.mark.unit

SECRET = "s" * 32  # PyJWT warns about HMAC keys shorter than the digest
ISSUER = "https://id.example/realms/streams"
AUDIENCE = "streamspace"
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks(rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey) -> jwt.PyJWKSet:
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True)
    return jwt.PyJWKSet(
        [{**rsa_jwk, "kid": "rsa-1", "alg": "RS256", "use": "sig"}, {**ec_jwk, "kid": "ec-1"}]
    )


def oidc_claims(**overrides: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "0c5c2a8e-5b1f-4bd6-9d53-7f3c0f0e4a11",
        "preferred_username": "alice",
        "iat": now,
        "exp": now + HOUR,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: Any, claims: dict[str, Any], alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def check(token: str, jwks: jwt.PyJWKSet | None = None, secret: str | None = SECRET) -> Claims:
    return verify(token, secret=secret, jwks=jwks, issuer=ISSUER, audience=AUDIENCE)


def rejected(token: str, match: str, **kwargs: Any) -> TokenError:
    with pytest.raises(TokenError, match=match) as caught:
        check(token, **kwargs)
    assert not token or token not in str(caught.value)
    return caught.value


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    """A token PyJWT refuses to make (``alg: none``, an HMAC keyed with a public key)."""
    body = {k: int(v.timestamp()) if isinstance(v, datetime) else v for k, v in claims.items()}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}"
    signature = (
        b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    )
    return f"{signing_input}.{b64(signature)}"


def test_hs256_round_trip() -> None:
    token = mint_hs256(SECRET, "alice", "operator", HOUR)
    assert header_algorithm(token) == "HS256"
    assert check(token) == Claims(user="alice", role="operator")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["iss"] == "streamspace"
    assert claims["sub"] == "alice"
    assert claims["exp"] - claims["iat"] == 3600


def test_hs256_audience_when_present_must_match() -> None:
    assert check(mint_hs256(SECRET, "alice", "user", HOUR, audience=AUDIENCE)).user == "alice"
    rejected(mint_hs256(SECRET, "alice", "user", HOUR, audience="other"), "wrong audience")


@pytest.mark.parametrize(
    ("user", "role", "ttl"),
    [("Alice", "user", HOUR), ("alice", "root", HOUR), ("alice", "user", timedelta(0))],
)
def test_mint_refuses_bad_input(user: str, role: str, ttl: timedelta) -> None:
    with pytest.raises(ValueError, match="must be"):
        mint_hs256(SECRET, user, role, ttl)


@pytest.mark.parametrize(
    ("claims", "role"),
    [
        ({}, "user"),
        ({"role": "admin"}, "admin"),
        ({"role": "superuser"}, "user"),
        ({"roles": ["viewer", "operator"]}, "operator"),
        ({"groups": ["admin", "staff"], "role": "user"}, "admin"),
        ({"roles": "operator"}, "operator"),
        ({"roles": [1, None, {"a": "admin"}]}, "user"),
    ],
)
def test_role_is_the_highest_known_one(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet, claims: dict[str, Any], role: str
) -> None:
    assert check(sign(rsa_key, oidc_claims(**claims)), jwks).role == role


@pytest.mark.parametrize(
    ("names", "user"),
    [
        ({}, "alice"),
        ({"preferred_username": "Alice@example.com", "sub": "alice-2"}, "alice-2"),
        ({"preferred_username": None, "sub": "bob"}, "bob"),
        ({"preferred_username": ["x"], "sub": "carol"}, "carol"),
    ],
)
def test_user_is_preferred_username_else_sub(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet, names: dict[str, Any], user: str
) -> None:
    assert check(sign(rsa_key, oidc_claims(**names)), jwks).user == user


@pytest.mark.parametrize(
    "names",
    [
        {"preferred_username": "Alice", "sub": "Alice"},
        {"preferred_username": None, "sub": "a_b"},
        {"preferred_username": None, "sub": "x" * 64},
        {"preferred_username": None, "sub": None},
    ],
)
def test_invalid_user_names_are_rejected(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet, names: dict[str, Any]
) -> None:
    rejected(sign(rsa_key, oidc_claims(**names)), "DNS label", jwks=jwks)


def test_rs256_and_es256_accepted(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: jwt.PyJWKSet
) -> None:
    assert check(sign(rsa_key, oidc_claims()), jwks, secret=None).user == "alice"
    assert check(sign(ec_key, oidc_claims(), "ES256", "ec-1"), jwks).user == "alice"


def test_alg_none_is_rejected(jwks: jwt.PyJWKSet) -> None:
    for alg in ("none", "None", "NONE"):
        token = handmade({"alg": alg, "typ": "JWT"}, oidc_claims(), None)
        rejected(token, "algorithm not accepted", jwks=jwks)


def test_unsupported_algorithms_are_rejected(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet
) -> None:
    rejected(sign(SECRET * 2, oidc_claims(), "HS512"), "algorithm not accepted", jwks=jwks)
    rejected(sign(rsa_key, oidc_claims(), "PS256"), "algorithm not accepted", jwks=jwks)


def test_expired_tokens_say_so(rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet) -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    rejected(mint_hs256(SECRET, "alice", "user", HOUR, now=past), "^token expired$")
    stale = oidc_claims(iat=past, exp=past + HOUR)
    rejected(sign(rsa_key, stale), "^token expired$", jwks=jwks)


def test_leeway_tolerates_small_clock_skew() -> None:
    just_expired = datetime.now(UTC) - HOUR - timedelta(seconds=10)
    assert check(mint_hs256(SECRET, "alice", "user", HOUR, now=just_expired)).user == "alice"


def test_exp_is_required(rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet) -> None:
    rejected(sign(SECRET, {"sub": "alice"}, "HS256"), "missing exp claim")
    rejected(sign(rsa_key, oidc_claims(exp=None)), "missing exp claim", jwks=jwks)


def test_oidc_tokens_need_the_audience(rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet) -> None:
    rejected(sign(rsa_key, oidc_claims(aud="someone-else")), "wrong audience", jwks=jwks)
    rejected(sign(rsa_key, oidc_claims(aud=None)), "missing aud claim", jwks=jwks)


def test_oidc_tokens_need_the_issuer(rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet) -> None:
    rejected(sign(rsa_key, oidc_claims(iss="https://evil.example")), "wrong issuer", jwks=jwks)
    rejected(sign(rsa_key, oidc_claims(iss=None)), "missing iss claim", jwks=jwks)


def test_wrong_hs256_secret_is_rejected() -> None:
    rejected(mint_hs256("t" * 32, "alice", "admin", HOUR), "bad signature")


def test_rs256_signed_by_another_key_is_rejected(
    other_rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet
) -> None:
    rejected(sign(other_rsa_key, oidc_claims()), "bad signature", jwks=jwks)


def test_hmac_keyed_with_the_public_key_is_rejected(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet
) -> None:
    """Algorithm confusion: an HS256 token whose secret is the issuer's public key."""
    pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = handmade({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, oidc_claims(), pem)
    rejected(token, "HS256 tokens are not accepted", jwks=jwks, secret=None)
    rejected(token, "bad signature", jwks=jwks)


def test_a_key_is_used_only_for_its_own_algorithm(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: jwt.PyJWKSet
) -> None:
    rejected(sign(rsa_key, oidc_claims(), "RS256", "ec-1"), "does not fit", jwks=jwks)
    rejected(sign(rsa_key, oidc_claims(), "RS512", "rsa-1"), "does not fit", jwks=jwks)
    rejected(sign(ec_key, oidc_claims(), "ES256", "rsa-1"), "does not fit", jwks=jwks)


def test_unknown_kid_asks_for_a_fresh_key_set(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet
) -> None:
    with pytest.raises(UnknownKeyError, match="unknown signing key"):
        check(sign(rsa_key, oidc_claims(), kid="rsa-2"), jwks)
    rejected(sign(rsa_key, oidc_claims(), kid=None), "no key id", jwks=jwks)


def test_oidc_tokens_need_a_key_set(rsa_key: rsa.RSAPrivateKey) -> None:
    rejected(sign(rsa_key, oidc_claims()), "RS256 tokens are not accepted")


def test_nothing_configured_rejects_every_jwt() -> None:
    rejected(mint_hs256(SECRET, "alice", "user", HOUR), "not accepted", secret=None)


@pytest.mark.parametrize("token", ["", "sk_abc", "a.b", "a.b.c", "e30.e30.", "..."])
def test_malformed_tokens_are_rejected(token: str) -> None:
    rejected(token, "malformed|algorithm not accepted")


def test_cli_mints_a_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    assert main(["token", "jwt", "--user", "alice", "--role", "admin", "--ttl", "90s"]) == 0
    out, err = capsys.readouterr()
    assert check(out.strip()) == Claims(user="alice", role="admin")
    assert "valid for 1m30s" in err
    monkeypatch.delenv("JWT_SECRET")
    assert main(["token", "jwt", "--user", "alice"]) == 2
    assert "JWT_SECRET is not set" in capsys.readouterr().err
