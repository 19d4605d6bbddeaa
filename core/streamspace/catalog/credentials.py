"""Which Secrets may serve as repository credentials, and for which host (pure, no I/O).

``auth.secretRef`` is a name typed by a caller; without a check it would make the operator send
any Secret of the namespace (a ServiceAccount token, a database password) to any host. So a
Secret is a repository credential only when its ``type`` is ``stream.space/repository-auth``
(a Secret's type cannot be changed after creation, so an existing Secret cannot be turned into
one), and it is sent only to the host it was made for: the annotation
``stream.space/credential-host`` (``host:port``) must name the repository URL's host and port.
The facade's repository endpoint creates such Secrets; GitOps users create them the same way.

The facade's Secrets are named by the API server (``<repository>-auth-<5 random characters>``,
``generateName``) and owned by their repository from the create call on: no Secret made in
advance can be taken for one of them, and the garbage collector deletes each with its repository
(decision 90).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from streamspace import API_GROUP, API_VERSION
from streamspace.catalog.errors import Reason, RepositoryError
from streamspace.catalog.git import Credentials, normalize_url
from streamspace.catalog.netguard import DEFAULT_PORTS

CREDENTIAL_SECRET_TYPE = f"{API_GROUP}/repository-auth"
CREDENTIAL_HOST_ANNOTATION = f"{API_GROUP}/credential-host"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "streamspace"
REPOSITORY_LABEL = f"{API_GROUP}/repository"
# the API server completes a generateName with 5 characters, and cuts the prefix to 58
_MAX_PREFIX = 63 - 5


def credential_host(url: str) -> str:
    """``host:port`` of a repository URL (default port made explicit, IPv6 in brackets)."""
    parts = urlsplit(normalize_url(url, allow_local=True))
    if parts.scheme == "file":
        return "localhost:0"
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def credential_secret_prefix(repository: str) -> str:
    """The ``generateName`` of the credential Secret the API makes for ``repository``: its name
    (cut so that the whole name stays a DNS label) and ``-auth-``."""
    keep = _MAX_PREFIX - len("-auth-")
    return f"{repository[:keep].rstrip('-.')}-auth-"


def credential_secret(
    name: str,
    url: str,
    data: Mapping[str, str],
    labels: Mapping[str, str],
    owner: Mapping[str, Any] | None = None,
    *,
    generate_name: bool = False,
) -> dict[str, Any]:
    """A Secret body holding repository credentials for ``url``'s host.

    ``owner`` (a TemplateRepository as the API server returned it) becomes the Secret's owner,
    so the garbage collector deletes the Secret with it. Without ``blockOwnerDeletion``: setting
    that needs permission on the owner's finalizers, and nothing waits for the Secret to go.
    With ``generate_name``, ``name`` is a prefix the API server completes.
    """
    metadata: dict[str, Any] = {
        "generateName" if generate_name else "name": name,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY, **labels},
        "annotations": {CREDENTIAL_HOST_ANNOTATION: credential_host(url)},
    }
    if owner is not None:
        metadata["ownerReferences"] = [
            {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": "TemplateRepository",
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
            }
        ]
    return {
        "metadata": metadata,
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
