"""Bearer JWTs: minting HS256 tokens and verifying HS256 or OIDC (RS256, ES256) tokens.

Pure: no I/O. The caller supplies the auth settings and, for OIDC, the issuer's key set; fetching
and caching that set is the facade's job.

Who a token names is read from exactly one claim, and roles come from exactly one place, so no
claim an identity provider lets users shape can make them someone else or an admin:

* HS256 tokens are ours (``streamspace token jwt``): ``iss`` must be ``streamspace``, ``aud``
  must be ``JWT_AUDIENCE`` (absent when that is unset), the user is ``sub`` and the role is
  ``role``.
* OIDC tokens: ``iss`` and ``aud`` must be the configured ones, the user is the claim
  ``OIDC_USERNAME_CLAIM`` (default ``sub``), and the role is the highest one that
  ``OIDC_ROLE_GROUPS`` maps a group of ``OIDC_GROUPS_CLAIM`` to; ``user`` otherwise.

The algorithm a token claims decides only *which* configured key may verify it, never *how* a key
is used: HS256 is verified with the shared secret alone, asymmetric algorithms only with a public
key of the matching type taken from the key set by ``kid``. So a token cannot make a public key
serve as an HMAC secret (algorithm confusion), and ``alg: none`` is never accepted.

Every failure raises ``TokenError`` with a short message that is safe to return to the client: it
never repeats the token or anything read from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.types import Options

from streamspace.config import ROLE_NAMES, AuthSettings
from streamspace.naming import is_dns_label

ISSUER = "streamspace"
"""``iss`` of the HS256 tokens minted here, required in every HS256 token."""

ROLES = ROLE_NAMES
"""Lowest to highest; the same roles as API keys and ``users.role``."""

HMAC_ALGORITHM = "HS256"
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256"})
"""Algorithms accepted for OIDC tokens, each only with a key of its own type."""

_KEY_TYPES = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "ES256": "EC"}


class TokenError(ValueError):
    """The token is not acceptable; the message is safe to show to the client."""


class UnknownKeyError(TokenError):
    """The token names a key id absent from the key set: the set may be out of date."""


@dataclass(frozen=True)
class Claims:
    user: str
    """The user name, a DNS label."""
    role: str
    """``user``, ``operator`` or ``admin``."""
    groups: tuple[str, ...] | None = None
    """The identity provider's groups (``OIDC_GROUPS_CLAIM``; ``groups`` of our own tokens);
    None when the token says nothing of groups (they are then left as they were)."""
    email: str | None = None
    display_name: str | None = None


def mint_hs256(
    secret: str,
    user: str,
    role: str,
    ttl: timedelta,
    *,
    audience: str | None = None,
    now: datetime | None = None,
    groups: Sequence[str] | None = None,
) -> str:
    """An HS256 token for ``user`` with ``role`` (and ``groups``, when given), valid for
    ``ttl`` from ``now``."""
    if not is_dns_label(user):
        raise ValueError(f"user {user!r} must be a DNS label (lower-case letters, digits, '-')")
    if role not in ROLES:
        raise ValueError(f"role {role!r} must be one of {', '.join(ROLES)}")
    if ttl <= timedelta(0):
        raise ValueError("the token lifetime must be longer than zero")
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": user,
        "role": role,
        "iat": issued,
        "exp": issued + ttl,
    }
    if audience is not None:
        claims["aud"] = audience
    if groups is not None:
        claims["groups"] = list(groups)
    return jwt.encode(claims, secret, algorithm=HMAC_ALGORITHM)


def header_algorithm(token: str) -> str:
    """The ``alg`` named by the unverified header: a caller fetches keys only if needed."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenError("invalid token: malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise TokenError("invalid token: malformed")
    return alg


def verify(
    token: str,
    settings: AuthSettings,
    jwks: jwt.PyJWKSet | None = None,
    *,
    leeway: int = 30,
) -> Claims:
    """Verify ``token`` and return who it names; raise ``TokenError`` otherwise.

    HS256 tokens need ``settings.jwt_secret``, ``iss`` ``streamspace`` and, when
    ``jwt_audience`` is set, that ``aud``. Asymmetric tokens need ``jwks`` and the OIDC issuer
    and audience: ``iss`` must equal the issuer and ``aud`` contain the audience. Every token
    needs ``exp``.
    """
    alg = header_algorithm(token)
    if alg == HMAC_ALGORITHM and settings.jwt_secret is not None:
        audience = settings.jwt_audience
        payload = _decode(
            token,
            settings.jwt_secret,
            alg,
            leeway=leeway,
            issuer=ISSUER,
            audience=audience,
            require=("exp", "iss", "aud") if audience else ("exp", "iss"),
            verify_aud=audience is not None,
        )
        if audience is None and "aud" in payload:
            raise TokenError("invalid token: wrong audience")
        return Claims(
            user=_name(payload, "sub"),
            role=_own_role(payload),
            groups=_groups(payload, "groups"),
            email=_text(payload, "email"),
            display_name=_text(payload, "name"),
        )
    if alg in ASYMMETRIC_ALGORITHMS and jwks is not None:
        if settings.oidc_issuer is None or settings.oidc_audience is None:
            raise TokenError("invalid token: OIDC issuer and audience are not configured")
        key = _signing_key(token, alg, jwks)
        payload = _decode(
            token,
            key,
            alg,
            leeway=leeway,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            require=("exp", "iss", "aud"),
        )
        return Claims(
            user=_name(payload, settings.oidc_username_claim),
            role=_mapped_role(payload, settings),
            groups=_groups(payload, settings.oidc_groups_claim) or (),
            email=_text(payload, "email"),
            display_name=_text(payload, "name"),
        )
    if alg == HMAC_ALGORITHM or alg in ASYMMETRIC_ALGORITHMS:
        raise TokenError(f"invalid token: {alg} tokens are not accepted")
    raise TokenError("invalid token: algorithm not accepted")


def _signing_key(token: str, alg: str, jwks: jwt.PyJWKSet) -> jwt.PyJWK:
    kid = jwt.get_unverified_header(token).get("kid")
    if not isinstance(kid, str) or not kid:
        raise TokenError("invalid token: no key id")
    try:
        key = jwks[kid]
    except KeyError:
        raise UnknownKeyError("invalid token: unknown signing key") from None
    # PyJWK binds the algorithm it was built for (the JWK's ``alg``, else one inferred from its
    # type), so a key is used only for that algorithm and only if it is a signing key.
    if (
        key.key_type != _KEY_TYPES[alg]
        or key.algorithm_name != alg
        or key.public_key_use not in {None, "sig"}
    ):
        raise TokenError("invalid token: signing key does not fit the algorithm")
    return key


def _decode(
    token: str,
    key: str | jwt.PyJWK,
    alg: str,
    *,
    leeway: int,
    issuer: str | None = None,
    audience: str | None = None,
    require: tuple[str, ...] = ("exp",),
    verify_aud: bool = True,
) -> dict[str, Any]:
    options: Options = {"require": list(require), "verify_aud": verify_aud}
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            options=options,
        )
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenError(f"invalid token: missing {exc.claim} claim") from None
    except jwt.InvalidAudienceError:
        raise TokenError("invalid token: wrong audience") from None
    except jwt.InvalidIssuerError:
        raise TokenError("invalid token: wrong issuer") from None
    except jwt.ImmatureSignatureError:
        raise TokenError("invalid token: not yet valid") from None
    except jwt.InvalidSignatureError:
        raise TokenError("invalid token: bad signature") from None
    except jwt.PyJWTError:
        raise TokenError("invalid token") from None


def _name(payload: dict[str, Any], claim: str) -> str:
    """The user name from ``claim`` alone: no fallback to another claim."""
    value = payload.get(claim)
    if isinstance(value, str) and is_dns_label(value):
        return value
    raise TokenError(f"invalid token: the user name ({claim}) is not a DNS label")


def _own_role(payload: dict[str, Any]) -> str:
    """The ``role`` of a token we minted; ``user`` when it names none."""
    role = payload.get("role", "user")
    if role not in ROLES:
        raise TokenError("invalid token: unknown role")
    return str(role)


MAX_GROUPS = 100
"""Groups kept of one token (an identity provider listing more is cut, sorted, to this many)."""
MAX_GROUP_LENGTH = 128


def _groups(payload: dict[str, Any], claim: str) -> tuple[str, ...] | None:
    """The group names of ``claim`` (a list of strings, or one string), sorted; None when the
    token has no such claim. Names that are empty or too long are left out."""
    value = payload.get(claim)
    if value is None:
        return None
    listed = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    names = {g for g in listed if isinstance(g, str) and 0 < len(g) <= MAX_GROUP_LENGTH}
    return tuple(sorted(names)[:MAX_GROUPS])


def _text(payload: dict[str, Any], claim: str, limit: int = 256) -> str | None:
    value = payload.get(claim)
    return value[:limit] if isinstance(value, str) and value else None


def _mapped_role(payload: dict[str, Any], settings: AuthSettings) -> str:
    """The highest role a group of the caller is mapped to; ``user`` by default.

    Group names are compared exactly; a group called ``admin`` is just a group unless the
    mapping names it.
    """
    groups = set(_groups(payload, settings.oidc_groups_claim) or ())
    found = {"user"}
    found.update(role for group, role in settings.oidc_role_groups if group in groups)
    return max(found, key=ROLES.index)
