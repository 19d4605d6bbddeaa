"""The session access gate: short-lived credentials for a session's host, and their check.

``/connect`` issues a credential bound to one session (namespace, name), the user it was issued
to and the session's owner, valid until ``expires``. The browser presents it to the session's
host, first as the ``?streamspace_access=`` query, then as the cookie of the same name; the
ingress controller asks the facade's auth-check endpoint (forward auth) about every request, and
the answer is :func:`judge`'s:

* 200: a valid credential of the session's owner, for the session the host serves;
* 401: no credential, or one that is malformed, forged, signed with another key, or expired;
* 403: a valid credential that is for another session, or of a user who may no longer use it:
  the session's current spec decides (its owner and its ``control`` shares pass; decision 175),
  so a revoked share or a transfer takes effect at the next request, whatever the credential's
  expiry.

A credential is ``v1.<payload>.<signature>``: the payload is compact JSON in URL-safe base64,
the signature HMAC-SHA256 over ``v1.<payload>`` with a key derived from a configured secret
(:func:`signing_key`), so the same secret never signs two kinds of token. Pure: no I/O, the
clock is an argument.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from streamspace import sharing
from streamspace.naming import workload_name

PARAMETER = "streamspace_access"
"""The query parameter and the cookie that carry the credential to the session's host."""
USER_HEADER = "X-StreamSpace-User"
SESSION_HEADER = "X-StreamSpace-Session"
"""Headers of the 200 answer, passed on to the session by the ingress controller."""

_VERSION = "v1"
_KEY_LABEL = b"streamspace session access v1"
_MAX_TOKEN = 2048


class AccessError(ValueError):
    """The credential is not acceptable; the message is safe to show (it repeats nothing)."""


@dataclass(frozen=True)
class Grant:
    """What a credential says: who may reach which session until when."""

    namespace: str
    session: str
    user: str
    """The user the credential was issued to."""
    owner: str
    """The session's owner when it was issued."""
    expires: datetime


@dataclass(frozen=True)
class Verdict:
    status: int
    """200, 401 or 403."""
    reason: str
    """A short, safe explanation."""
    grant: Grant | None = None


@dataclass(frozen=True)
class Original:
    """The request the ingress controller is asking about."""

    scheme: str
    host: str
    """Lower case, without a port."""
    query_token: str | None


def signing_key(secret: str) -> bytes:
    """The gate's HMAC key, derived from a configured secret with a label of its own."""
    return hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(key: bytes, signed: str) -> str:
    return _b64(hmac.new(key, signed.encode(), hashlib.sha256).digest())


def issue(key: bytes, grant: Grant) -> str:
    """The credential for ``grant``."""
    payload = {
        "ns": grant.namespace,
        "s": grant.session,
        "u": grant.user,
        "o": grant.owner,
        "exp": int(grant.expires.timestamp()),
    }
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    signed = f"{_VERSION}.{body}"
    return f"{signed}.{_sign(key, signed)}"


def read(key: bytes, token: str, now: datetime) -> Grant:
    """The grant of a genuine, unexpired credential; ``AccessError`` otherwise."""
    parts = token.split(".")
    if len(token) > _MAX_TOKEN or len(parts) != 3 or parts[0] != _VERSION:
        raise AccessError("malformed session credential")
    signed = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(key, signed).encode(), parts[2].encode()):
        raise AccessError("invalid session credential")
    try:
        payload = json.loads(_unb64(parts[1]))
        grant = Grant(
            namespace=str(payload["ns"]),
            session=str(payload["s"]),
            user=str(payload["u"]),
            owner=str(payload["o"]),
            expires=datetime.fromtimestamp(int(payload["exp"]), UTC),
        )
    except (ValueError, KeyError, TypeError, binascii.Error, OverflowError, OSError):
        raise AccessError("malformed session credential") from None
    if now >= grant.expires:
        raise AccessError("session credential expired")
    return grant


def session_host(session: str, domain: str) -> str:
    """The host a session's Ingress serves: ``<workload name>.<domain>``."""
    return f"{workload_name(session)}.{domain}"


def _serves(host: str, session: str, domain: str | None) -> bool:
    if domain:
        return host == session_host(session, domain.lower())
    # Without INGRESS_DOMAIN the gate sits behind a proxy of the deployer's making: the first
    # label still names the session.
    return host.split(".", 1)[0] == workload_name(session)


SpecOf = Callable[[Grant], Mapping[str, Any] | None]
"""The current spec of the session a grant is for; None when it no longer exists."""


def spec_at_issue(grant: Grant) -> Mapping[str, Any]:
    """The session as the credential describes it (its owner when issued, no shares)."""
    return {"user": grant.owner}


def judge(
    key: bytes,
    token: str | None,
    host: str,
    domain: str | None,
    now: datetime,
    *,
    current: SpecOf = spec_at_issue,
) -> Verdict:
    """Whether the request for ``host`` carrying ``token`` reaches the session behind it, by
    the session's ``current`` spec (the facade passes its watched copy)."""
    if not token:
        return Verdict(401, "session credential required")
    try:
        grant = read(key, token, now)
    except AccessError as exc:
        return Verdict(401, str(exc))
    if not host or not _serves(host, grant.session, domain):
        return Verdict(403, "the credential is for another session")
    spec = current(grant)
    if spec is None:
        return Verdict(403, "the session no longer exists")
    if not sharing.allows(sharing.access_of(spec, grant.user), sharing.CONTROL):
        return Verdict(403, "only the session's owner and users it is shared with may reach it")
    return Verdict(200, "ok", grant)


def original_request(headers: Mapping[str, str]) -> Original:
    """The request behind a forward-auth call: ``X-Original-URL`` (ingress-nginx), else
    ``X-Forwarded-Proto``/``-Host``/``-Uri`` (Traefik). Never raises: nothing usable gives an
    empty host, which no session's credential matches."""
    scheme, host, query = "http", "", ""
    original = headers.get("X-Original-URL")
    try:
        if original:
            parts = urlsplit(original)
            scheme, host, query = parts.scheme or "http", parts.netloc, parts.query
        else:
            scheme = headers.get("X-Forwarded-Proto") or "http"
            host = headers.get("X-Forwarded-Host") or ""
            query = urlsplit(headers.get("X-Forwarded-Uri") or "/").query
        tokens = parse_qs(query, max_num_fields=64).get(PARAMETER) if query else None
    except ValueError:
        return Original("http", "", None)
    # a session host is a DNS name: userinfo, a port, or a second value never belong to it
    host = host.rsplit("@", 1)[-1].split(",", 1)[0].strip().lower().split(":", 1)[0]
    return Original(scheme.lower(), host, tokens[0] if tokens else None)
