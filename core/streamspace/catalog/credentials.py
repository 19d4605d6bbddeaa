"""Which Secrets may serve as repository credentials, and for which host (pure, no I/O).

``auth.secretRef`` is a name typed by a caller; without a check it would make the operator send
any Secret of the namespace (a ServiceAccount token, a database password) to any host. So a
Secret is a repository credential only when its ``type`` is ``stream.space/repository-auth``
(a Secret's type cannot be changed after creation, so an existing Secret cannot be turned into
one), and it is sent only to the host it was made for: the annotation
``stream.space/credential-host`` (``host:port``) must name the repository URL's host and port.
The facade's repository endpoint creates such Secrets; GitOps users create them the same way.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from streamspace import API_GROUP
from streamspace.catalog.errors import Reason, RepositoryError
from streamspace.catalog.git import Credentials, normalize_url
from streamspace.catalog.netguard import DEFAULT_PORTS

CREDENTIAL_SECRET_TYPE = f"{API_GROUP}/repository-auth"
CREDENTIAL_HOST_ANNOTATION = f"{API_GROUP}/credential-host"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "streamspace"


def credential_host(url: str) -> str:
    """``host:port`` of a repository URL (default port made explicit, IPv6 in brackets)."""
    parts = urlsplit(normalize_url(url, allow_local=True))
    if parts.scheme == "file":
        return "localhost:0"
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def credential_secret(
    name: str, url: str, data: Mapping[str, str], labels: Mapping[str, str]
) -> dict[str, Any]:
    """A Secret body holding repository credentials for ``url``'s host."""
    return {
        "metadata": {
            "name": name,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, **labels},
            "annotations": {CREDENTIAL_HOST_ANNOTATION: credential_host(url)},
        },
        "type": CREDENTIAL_SECRET_TYPE,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def credentials_from_secret(
    secret: Mapping[str, Any] | None, name: str, kind: str, url: str
) -> Credentials:
    """The credentials of ``secret`` for a sync of ``url``, or RepositoryError (refused)."""
    if secret is None or secret.get("type") != CREDENTIAL_SECRET_TYPE:
        raise RepositoryError(
            f"Secret {name!r} is missing or is not a repository credential "
            f"(type {CREDENTIAL_SECRET_TYPE})",
            Reason.CREDENTIAL_REFUSED,
        )
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    bound = annotations.get(CREDENTIAL_HOST_ANNOTATION)
    if bound != credential_host(url):
        raise RepositoryError(
            f"Secret {name!r} is bound to another host (annotation {CREDENTIAL_HOST_ANNOTATION})",
            Reason.CREDENTIAL_REFUSED,
        )
    try:
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    except (binascii.Error, UnicodeDecodeError):
        raise RepositoryError(
            f"Secret {name!r} holds values that are not text", Reason.CREDENTIAL_REFUSED
        ) from None
    return Credentials(
        kind=kind,
        username=data.get("username"),
        password=data.get("token") if kind == "token" else data.get("password"),
        ssh_private_key=data.get("ssh-privatekey"),
        known_hosts=data.get("known_hosts"),
    )
