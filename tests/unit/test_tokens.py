"""Bearer JWTs: HS256 and OIDC verification, algorithm confusion, claims to user and role.

The identity attacks of issue 13 (item 10) are performed here with real signed tokens: a
``preferred_username`` that differs from ``sub``, ``role: admin`` and ``groups: [admin]`` claims
that no mapping names, HS256 tokens of another issuer, and a short ``JWT_SECRET``.
"""

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
from streamspace.config import AuthSettings, ConfigError, load_settings

pytestmark = pytest.mark.unit

SECRET = "s" * 32  # PyJWT warns about HMAC keys shorter than the digest
ISSUER = "https://id.example/realms/streams"
AUDIENCE = "streamspace"
HOUR = timedelta(hours=1)
MAPPING = (("streamspace-admins", "admin"), ("streamspace-operators", "operator"))


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
        "sub": "alice",
        "preferred_username": "Alice Liddell",
        "iat": now,
        "exp": now + HOUR,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: Any, claims: dict[str, Any], alg: str = "RS256", kid: str | None = "rsa-1") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid} if kid else None)


def settings(secret: str | None = SECRET, **overrides: Any) -> AuthSettings:
    base: dict[str, Any] = {
        "jwt_secret": secret,
        "oidc_issuer": ISSUER,
        "oidc_audience": AUDIENCE,
        "oidc_role_groups": MAPPING,
    }
    return AuthSettings(**{**base, **overrides})


def check(
    token: str, jwks: jwt.PyJWKSet | None = None, secret: str | None = SECRET, **overrides: Any
) -> Claims:
    return verify(token, settings(secret, **overrides), jwks)


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


def test_hs256_audience_is_jwt_audience() -> None:
    ours = mint_hs256(SECRET, "alice", "user", HOUR, audience="streams")
    assert check(ours, jwt_audience="streams").user == "alice"
    rejected(mint_hs256(SECRET, "alice", "user", HOUR, audience="other"), "wrong audience")
    rejected(ours, "wrong audience", jwt_audience="other")
    # JWT_AUDIENCE set: a token without aud was not made for this deployment
    rejected(mint_hs256(SECRET, "alice", "user", HOUR), "missing aud", jwt_audience="streams")
    # unset: a token made for some audience is someone else's
    rejected(ours, "wrong audience")


def hs256(claims: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    return jwt.encode({"iat": now, "exp": now + HOUR, **claims}, SECRET, algorithm="HS256")


def test_attack_hs256_token_of_another_issuer_is_rejected() -> None:
    """Signed with our secret, but issued by (or for) something else: refused."""
    rejected(hs256({"iss": "https://evil.example", "sub": "alice"}), "wrong issuer")
    rejected(hs256({"iss": ISSUER, "sub": "alice"}), "wrong issuer")
    rejected(hs256({"sub": "alice", "role": "admin"}), "missing iss claim")
    assert check(hs256({"iss": "streamspace", "sub": "alice"})) == Claims("alice", "user")


def test_hs256_user_is_sub_and_role_is_role() -> None:
    token = hs256({"iss": "streamspace", "sub": "mallory", "preferred_username": "alice"})
    assert check(token) == Claims("mallory", "user")
    assert check(hs256({"iss": "streamspace", "sub": "ops", "role": "operator"})).role == "operator"
    # groups never make a role in our own tokens; they are only carried (quotas, issue 19)
    assert check(hs256({"iss": "streamspace", "sub": "x", "groups": ["streamspace-admins"]})) == (
        Claims("x", "user", groups=("streamspace-admins",))
    )
    rejected(hs256({"iss": "streamspace", "sub": "x", "role": "root"}), "unknown role")


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
        ({"groups": ["streamspace-operators"]}, "operator"),
        ({"groups": ["staff", "streamspace-admins", "streamspace-operators"]}, "admin"),
        ({"groups": "streamspace-admins"}, "admin"),
        ({"groups": [1, None, {"a": "streamspace-admins"}, ["streamspace-admins"]]}, "user"),
        ({"groups": ["Streamspace-Admins", "streamspace-admins "]}, "user"),  # exact names only
        # the attack: role-like claims that no mapping names grant nothing
        ({"role": "admin"}, "user"),
        ({"roles": ["admin", "operator"]}, "user"),
        ({"groups": ["admin"]}, "user"),
        ({"groups": ["operator", "admin"], "role": "admin", "roles": "admin"}, "user"),
        ({"roles": ["streamspace-admins"]}, "user"),  # a mapped group, in another claim
    ],
)
def test_attack_role_comes_only_from_mapped_groups(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet, claims: dict[str, Any], role: str
) -> None:
    assert check(sign(rsa_key, oidc_claims(**claims)), jwks).role == role


def test_groups_claim_is_configurable(rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet) -> None:
    token = sign(rsa_key, oidc_claims(roles=["streamspace-admins"], groups=["x"]))
    assert check(token, jwks, oidc_groups_claim="roles").role == "admin"
    assert check(token, jwks, oidc_role_groups=()).role == "user"


def test_attack_preferred_username_does_not_override_sub(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet
) -> None:
    """Users can often choose their ``preferred_username``; only ``sub`` names them."""
    token = sign(rsa_key, oidc_claims(preferred_username="alice", sub="mallory"))
    assert check(token, jwks).user == "mallory"


@pytest.mark.parametrize(
    ("claim", "names", "user"),
    [
        ("sub", {"sub": "bob"}, "bob"),
        ("preferred_username", {"preferred_username": "carol", "sub": "c-1"}, "carol"),
        ("email_local", {"email_local": "dave", "sub": "d-1"}, "dave"),
    ],
)
def test_username_claim_is_configurable(
    rsa_key: rsa.RSAPrivateKey,
    jwks: jwt.PyJWKSet,
    claim: str,
    names: dict[str, Any],
    user: str,
) -> None:
    token = sign(rsa_key, oidc_claims(**names))
    assert check(token, jwks, oidc_username_claim=claim).user == user


@pytest.mark.parametrize(
    ("claim", "names"),
    [
        ("sub", {"sub": "Alice"}),
        ("sub", {"sub": "a_b"}),
        ("sub", {"sub": "x" * 64}),
        ("sub", {"sub": None, "preferred_username": "alice"}),  # no fallback to another claim
        ("preferred_username", {"preferred_username": "Alice@example.com", "sub": "alice"}),
        ("preferred_username", {"preferred_username": ["alice"], "sub": "alice"}),
        ("preferred_username", {"preferred_username": None, "sub": "alice"}),
    ],
)
def test_invalid_user_names_are_rejected(
    rsa_key: rsa.RSAPrivateKey, jwks: jwt.PyJWKSet, claim: str, names: dict[str, Any]
) -> None:
    token = sign(rsa_key, oidc_claims(**names))
    rejected(token, "DNS label", jwks=jwks, oidc_username_claim=claim)


def test_rs256_and_es256_accepted(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey, jwks: jwt.PyJWKSet
) -> None:
    claims = oidc_claims(sub="alice")
    assert check(sign(rsa_key, claims), jwks, secret=None).user == "alice"
    assert check(sign(ec_key, claims, "ES256", "ec-1"), jwks).user == "alice"


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
    rejected(sign(SECRET, {"sub": "alice", "iss": "streamspace"}, "HS256"), "missing exp claim")
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
    assert main(["token", "jwt", "--user", "bob", "--group", "gpu", "--group", "staff"]) == 0
    assert check(capsys.readouterr()[0].strip()).groups == ("gpu", "staff")
    monkeypatch.delenv("JWT_SECRET")
    assert main(["token", "jwt", "--user", "alice"]) == 2
    assert "JWT_SECRET is not set" in capsys.readouterr().err


@pytest.mark.parametrize("length", [0, 1, 16, 31])
def test_attack_short_jwt_secret_is_refused_at_start(length: int) -> None:
    short = "k" * length
    if length == 0:  # empty is "not set": HS256 tokens are simply not accepted
        assert load_settings({"JWT_SECRET": short}).auth.jwt_secret is None
        return
    with pytest.raises(ConfigError) as caught:
        load_settings({"JWT_SECRET": short})
    [problem] = caught.value.problems
    assert problem.startswith(f"JWT_SECRET: {length} characters is too short")
    assert "at least 32" in problem
    assert short not in problem  # the value itself is never repeated


def test_long_enough_secrets_are_accepted() -> None:
    assert load_settings({"JWT_SECRET": "k" * 32}).auth.jwt_secret == "k" * 32


@pytest.mark.parametrize(
    ("raw", "pairs"),
    [
        ("", ()),
        (
            "admin=streamspace-admins, operator=streamspace-operators",
            (("streamspace-admins", "admin"), ("streamspace-operators", "operator")),
        ),
        ("admin=a,admin=b,", (("a", "admin"), ("b", "admin"))),
        ("operator=cn=ops,ou=groups", None),  # no commas inside a group name
        ("root=x", None),
        ("admin=", None),
        ("admin", None),
    ],
)
def test_role_groups_setting(raw: str, pairs: tuple[tuple[str, str], ...] | None) -> None:
    if pairs is None:
        with pytest.raises(ConfigError, match="OIDC_ROLE_GROUPS"):
            load_settings({"OIDC_ROLE_GROUPS": raw})
    else:
        assert load_settings({"OIDC_ROLE_GROUPS": raw}).auth.oidc_role_groups == pairs


def test_oidc_claim_settings_default_to_sub_and_groups() -> None:
    auth = load_settings({}).auth
    assert (auth.oidc_username_claim, auth.oidc_groups_claim) == ("sub", "groups")
    custom = load_settings({"OIDC_USERNAME_CLAIM": "uid", "OIDC_GROUPS_CLAIM": "roles"}).auth
    assert (custom.oidc_username_claim, custom.oidc_groups_claim) == ("uid", "roles")
