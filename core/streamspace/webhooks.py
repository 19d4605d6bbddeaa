"""Repository webhooks: who sent a delivery, whether it is signed, and which push it reports.

Pure functions for ``POST /webhooks/repository/sync``; the facade view does the I/O. The order is
``identify`` → ``verify`` (on the raw body, before any parsing) → ``parse_push`` → ``matches``
against each TemplateRepository.

Headers used (matched case-insensitively):

* GitHub, recognised by ``X-GitHub-Event`` or ``X-Hub-Signature-256``: the signature
  ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`` (the legacy SHA-1
  ``X-Hub-Signature`` is not accepted), ``X-GitHub-Delivery`` (delivery id, for de-duplication)
  and ``X-GitHub-Event`` (``push``; ``ping`` and every other event are not syncs).
* GitLab, recognised by ``X-Gitlab-Event`` or ``X-Gitlab-Token``: ``X-Gitlab-Token`` must equal
  the secret; ``X-Gitlab-Event-UUID`` is the delivery id; ``X-Gitlab-Event`` the event.
* Anything else is generic, signed as Standard Webhooks (standardwebhooks.com) sign:
  ``webhook-id`` (the delivery id), ``webhook-timestamp`` (Unix seconds) and
  ``webhook-signature: v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`` (several
  space-separated signatures may be sent; one must match). The key is the secret's UTF-8 bytes,
  or for a ``whsec_<base64>`` secret the bytes it encodes, as the Standard Webhooks libraries
  do. A timestamp further than the tolerance (default 5 minutes) from now is refused, so a
  captured delivery cannot be replayed later, and within the window its id is de-duplicated.
  The old ``X-Webhook-Signature`` (an HMAC of the body alone, replayable for ever) is refused
  (decision 47).

A signature header that appears more than once is refused. An empty configured secret refuses
every delivery (it is a configuration mistake, not a way to turn signing off). GitHub and GitLab
deliveries must carry their delivery id (``required_delivery_id``): GitHub does not sign it, so
de-duplication cannot stop a replay under a new id; the per-repository rate limit on the syncs
a webhook requests (``streamspace.sync_requests``) bounds what such a replay costs.

Payload fields used (the body must be a JSON object):

* GitHub push: ``ref`` (``refs/heads/<branch>``; tags and other refs are not syncs), ``deleted``
  and ``after`` (a deleted branch is not a sync), ``repository.clone_url``, ``ssh_url``,
  ``html_url``, ``git_url``.
* GitLab push: ``object_kind`` (or ``event_name`` in system hooks; ``push`` only, ``tag_push`` and
  the rest are not syncs; without either, the ``Push Hook`` event header decides), ``ref``,
  ``after``, ``project.git_http_url``, ``git_ssh_url``, ``web_url``, ``http_url``, ``ssh_url``, and
  of older payloads ``repository.git_http_url``, ``git_ssh_url``, ``url``, ``homepage``,
  ``http_url``, ``ssh_url``.
* Generic: ``{"repository_url": str, "branch": str?, "ref": str?}``; the branch is ``branch``,
  else taken from ``ref`` (``refs/heads/<b>`` or a bare name); no branch means every branch.

Repositories are matched by ``repo_key``: scheme, user info, default ports, a trailing ``/`` and
``.git`` dropped, the host lower-cased, the path kept as it is (so ``https://``, ``ssh://`` and
scp-like ``git@host:org/repo`` forms of one repository match).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

GITHUB = "github"
GITLAB = "gitlab"
GENERIC = "generic"

_GITHUB_SIGNATURE = "x-hub-signature-256"
_GITLAB_SECRET = "x-gitlab-token"  # noqa: S105 - a header name, not a secret
_LEGACY_SIGNATURE = "x-webhook-signature"
_STANDARD_ID = "webhook-id"
_STANDARD_TIMESTAMP = "webhook-timestamp"
_STANDARD_SIGNATURE = "webhook-signature"
_DELIVERY_HEADERS = {"github": "X-GitHub-Delivery", "gitlab": "X-Gitlab-Event-UUID"}

DEFAULT_TOLERANCE = timedelta(minutes=5)
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)

_HEX_DIGEST = re.compile(r"[0-9a-f]{64}", re.ASCII | re.IGNORECASE)
_BRANCH_REF = "refs/heads/"
_TAG_REF = "refs/tags/"

_GITHUB_URL_FIELDS = ("clone_url", "ssh_url", "html_url", "git_url")
_GITLAB_PROJECT_URL_FIELDS = ("git_http_url", "git_ssh_url", "web_url", "http_url", "ssh_url")
_GITLAB_REPOSITORY_URL_FIELDS = (
    "git_http_url",
    "git_ssh_url",
    "url",
    "homepage",
    "http_url",
    "ssh_url",
)


class WebhookError(ValueError):
    """The payload is malformed; the message is safe to return to the client."""


@dataclass(frozen=True)
class Delivery:
    """Who sent a webhook call, and which event and delivery it says it is."""

    provider: str  # github | gitlab | generic
    delivery_id: str | None
    event: str | None


@dataclass(frozen=True)
class Push:
    """A branch push: the repository under every URL the payload gives, and the branch."""

    urls: tuple[str, ...]
    branch: str | None  # None: any branch (a generic call that names none)


# --- headers --------------------------------------------------------------------------------


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name`` (lower-case), whatever the case of the caller's keys.

    ``items()`` of a multidict yields repeated headers once each, so duplicates are seen.
    """
    return [value for key, value in headers.items() if key.lower() == name]


def _first(headers: Mapping[str, str], name: str) -> str | None:
    values = _values(headers, name)
    return values[0] if values else None


def identify(headers: Mapping[str, str]) -> Delivery:
    """The provider from its characteristic headers: GitHub, then GitLab, else generic."""
    if _first(headers, "x-github-event") is not None or _values(headers, _GITHUB_SIGNATURE):
        return Delivery(
            GITHUB, _first(headers, "x-github-delivery"), _first(headers, "x-github-event")
        )
    if _first(headers, "x-gitlab-event") is not None or _values(headers, _GITLAB_SECRET):
        return Delivery(
            GITLAB, _first(headers, "x-gitlab-event-uuid"), _first(headers, "x-gitlab-event")
        )
    return Delivery(GENERIC, _first(headers, _STANDARD_ID), None)


def legacy_signature(headers: Mapping[str, str]) -> bool:
    """Whether the delivery is signed with the old, refused ``X-Webhook-Signature`` only."""
    return bool(_values(headers, _LEGACY_SIGNATURE)) and not _values(headers, _STANDARD_SIGNATURE)


def required_delivery_id(delivery: Delivery) -> str | None:
    """The header a GitHub or GitLab delivery lacks (its delivery id), or None."""
    if delivery.delivery_id or delivery.provider == GENERIC:
        return None  # a signed generic delivery cannot lack its id: the signature covers it
    return _DELIVERY_HEADERS[delivery.provider]


# --- signatures -----------------------------------------------------------------------------


def _bytes(value: str) -> bytes:
    """``value`` as bytes, for any str: header values and environment variables may carry
    surrogate escapes of undecodable bytes, which plain UTF-8 encoding refuses."""
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogatepass")


def _hmac_ok(value: str, secret: str, body: bytes) -> bool:
    value = value.strip()
    if value[:7].lower() != "sha256=":
        return False
    value = value[7:]
    if not _HEX_DIGEST.fullmatch(value):
        return False
    expected = hmac.new(_bytes(secret), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(value.lower().encode("ascii"), expected.encode("ascii"))


def _standard_key(secret: str) -> bytes | None:
    if not secret.startswith("whsec_"):
        return _bytes(secret)
    try:
        return base64.b64decode(secret[6:], validate=True) or None
    except (binascii.Error, ValueError):
        return None


def _one(headers: Mapping[str, str], name: str) -> str | None:
    values = _values(headers, name)
    return values[0].strip() if len(values) == 1 and values[0].strip() else None


def _standard_ok(
    headers: Mapping[str, str], body: bytes, secret: str, now: datetime, tolerance: timedelta
) -> bool:
    """The Standard Webhooks check: id, a timestamp within ``tolerance`` of ``now``, and one
    ``v1`` signature of ``id.timestamp.body`` that matches."""
    delivery_id = _one(headers, _STANDARD_ID)
    stamp = _one(headers, _STANDARD_TIMESTAMP)
    signatures = _one(headers, _STANDARD_SIGNATURE)
    key = _standard_key(secret)
    if delivery_id is None or stamp is None or signatures is None or key is None:
        return False
    if not _TIMESTAMP.fullmatch(stamp):
        return False
    if abs(now.timestamp() - int(stamp)) > tolerance.total_seconds():
        return False  # stale (a replay) or from the future
    signed = _bytes(delivery_id) + b"." + stamp.encode("ascii") + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest())
    matched = False
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and value.isascii():
            # every candidate is compared, so the time taken does not say which one matched
            matched |= hmac.compare_digest(_bytes(value), expected)
    return matched


def verify(
    delivery: Delivery,
    headers: Mapping[str, str],
    body: bytes,
    secret: str | None,
    *,
    allow_unsigned: bool,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> bool:
    """Whether the raw ``body`` is authentic (and, for generic deliveries, fresh at ``now``);
    never raises on garbage headers.

    Without a configured secret the answer is ``allow_unsigned``; with one, the provider's
    signature must be present, well-formed and right, whatever ``allow_unsigned`` says.
    """
    if secret is None:
        return allow_unsigned
    if not secret:
        return False
    if delivery.provider == GENERIC:
        return _standard_ok(headers, body, secret, now, tolerance)
    name = _GITHUB_SIGNATURE if delivery.provider == GITHUB else _GITLAB_SECRET
    values = _values(headers, name)
    if len(values) != 1 or not values[0]:
        return False
    if delivery.provider == GITLAB:
        return hmac.compare_digest(_bytes(values[0]), _bytes(secret))
    return _hmac_ok(values[0], secret, body)


def standard_signature(secret: str, delivery_id: str, stamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value a sender computes (for clients and tests)."""
    key = _standard_key(secret) or b""
    signed = _bytes(delivery_id) + b"." + str(stamp).encode() + b"." + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


# --- payloads -------------------------------------------------------------------------------


def _load(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except RecursionError:
        raise WebhookError("the body nests too deeply") from None
    except ValueError:  # also UnicodeDecodeError and over-long integers
        raise WebhookError("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise WebhookError("the body must be a JSON object")
    return data


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WebhookError(f"{key!r} must be an object")
    return value


def _string(data: Mapping[str, Any], key: str, where: str = "") -> str | None:
    """An optional string field; an empty string counts as absent."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise WebhookError(f"'{where}{key}' must be a string")
    return value


def _urls(data: Mapping[str, Any] | None, fields: Iterable[str], where: str) -> list[str]:
    if data is None:
        return []
    return [url for key in fields if (url := _string(data, key, where)) is not None]


def _push(urls: list[str], branch: str | None) -> Push:
    unique = tuple(dict.fromkeys(urls))
    if not unique:
        raise WebhookError("the payload names no repository URL")
    if not any(repo_key(url) for url in unique):
        raise WebhookError("the payload names no valid Git repository URL")
    return Push(unique, branch)


def _branch_of(ref: str) -> str | None:
    """The branch a full ref names, or None for tags, pull-request refs and the like."""
    if ref.startswith(_BRANCH_REF) and len(ref) > len(_BRANCH_REF):
        return ref[len(_BRANCH_REF) :]
    return None


def _deleted(data: Mapping[str, Any]) -> bool:
    after = data.get("after")
    return data.get("deleted") is True or (
        isinstance(after, str) and len(after) >= 40 and not after.strip("0")
    )


def _required_ref(data: Mapping[str, Any]) -> str:
    ref = _string(data, "ref")
    if ref is None:
        raise WebhookError("'ref' is missing")
    return ref


def _github(delivery: Delivery, data: Mapping[str, Any]) -> Push | None:
    if delivery.event is not None and delivery.event != "push":
        return None  # ping, pull_request, ...: acknowledged, nothing to sync
    branch = _branch_of(_required_ref(data))
    if branch is None or _deleted(data):
        return None
    repository = _object(data, "repository")
    if repository is None:
        raise WebhookError("'repository' is missing")
    return _push(_urls(repository, _GITHUB_URL_FIELDS, "repository."), branch)


def _gitlab(delivery: Delivery, data: Mapping[str, Any]) -> Push | None:
    kind = _string(data, "object_kind") or _string(data, "event_name")
    if kind is None:
        if delivery.event is None:
            raise WebhookError("'object_kind' is missing")
        if delivery.event != "Push Hook":
            return None
    elif kind != "push":
        return None  # tag_push, merge_request, ...
    branch = _branch_of(_required_ref(data))
    if branch is None or _deleted(data):
        return None
    urls = _urls(_object(data, "project"), _GITLAB_PROJECT_URL_FIELDS, "project.")
    urls += _urls(_object(data, "repository"), _GITLAB_REPOSITORY_URL_FIELDS, "repository.")
    return _push(urls, branch)


def _generic(data: Mapping[str, Any]) -> Push | None:
    url = _string(data, "repository_url")
    if url is None:
        raise WebhookError("'repository_url' is missing")
    if repo_key(url) is None:
        raise WebhookError("'repository_url' is not a Git repository URL")
    branch = _string(data, "branch")
    ref = _string(data, "ref")
    if branch is None and ref is not None:
        if ref.startswith(_TAG_REF):
            return None
        branch = _branch_of(ref) if ref.startswith("refs/") else ref
        if branch is None:
            return None  # another kind of ref (pull requests, notes): nothing to sync
    return Push((url,), branch)


def parse_push(delivery: Delivery, body: bytes) -> Push | None:
    """The branch push a delivery reports, None when it is not one (the caller answers 2xx and
    syncs nothing), or WebhookError when the body is malformed."""
    data = _load(body)
    if delivery.provider == GITHUB:
        return _github(delivery, data)
    if delivery.provider == GITLAB:
        return _gitlab(delivery, data)
    return _generic(data)


# --- matching -------------------------------------------------------------------------------

_SCHEMES = {"http", "https", "ssh", "git", "git+ssh", "ssh+git"}
_DEFAULT_PORTS = {"http": 80, "https": 443, "ssh": 22, "git+ssh": 22, "ssh+git": 22, "git": 9418}
# Git's rule: a colon before any slash, and no scheme, makes ``[user@]host:path``.
_SCP_LIKE = re.compile(r"^(?:[^@/:\s]+@)?(?P<host>[^@/:\s\[\]]+):(?P<path>.+)$")


def _clean_path(path: str) -> str | None:
    path = path.strip("/")
    path = path.removesuffix(".git").rstrip("/")
    return path or None


def _scp_key(url: str) -> str | None:
    scp = _SCP_LIKE.match(url)
    if scp is None:
        return None
    path = _clean_path(scp["path"])
    return f"{scp['host'].lower()}/{path}" if path else None


def _url_key(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port, or an unbalanced IPv6 bracket
        return None
    scheme = parts.scheme.lower()
    path = _clean_path(parts.path)
    if path is None:
        return None
    if scheme == "file":
        return f"file:///{path}" if parts.netloc in ("", "localhost") else None
    if scheme not in _SCHEMES or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    return f"{host}/{path}"


def repo_key(url: str) -> str | None:
    """A key equal for every spelling of one Git repository, or None when ``url`` is not one.

    ``https://github.com/Org/Repo``, ``ssh://git@github.com/Org/Repo.git`` and
    ``git@github.com:Org/Repo.git`` all give ``github.com/Org/Repo``; a non-default port stays
    (``host:8443/org/repo``). Local repositories keep their scheme: ``file:///srv/repo``, also
    for a bare absolute path.
    """
    url = url.strip()
    if not url or any(c.isspace() or c == "\x00" for c in url):
        return None
    if url.startswith("/"):
        url = "file://" + url
    return _url_key(url) if "://" in url else _scp_key(url)


def matches(push: Push, repo_url: str, repo_branch: str) -> bool:
    """Whether ``push`` concerns the repository at ``repo_url`` tracking ``repo_branch``."""
    if push.branch is not None and push.branch != repo_branch:
        return False
    # Hosting services treat repository paths case-insensitively (a push from ``Org/Repo``
    # concerns a repository configured as ``org/repo``); a false match only costs a sync.
    key = repo_key(repo_url)
    return key is not None and any(
        (other := repo_key(url)) is not None and other.lower() == key.lower() for url in push.urls
    )
