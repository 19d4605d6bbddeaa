"""A plugin's Secret ``plugin-<name>`` (docs/PLUGINS.md §2): its signing secret and its secret
configuration, owned by the Plugin (a controller reference) so it goes with it.

The one home of that Secret's shape for every process: whoever makes one (the facade on install,
the operator for a Plugin applied with kubectl) builds it here, and whoever reads one (the
operator's config check, the facade's config writes, the event deliveries) first checks
:func:`owned_by` against the Plugin's uid and reads its values here.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Mapping
from typing import Any

from streamspace.manifests import MANAGED_BY
from streamspace.naming import label_value
from streamspace.plugins.workload import (
    CONFIG_KEY,
    PLUGIN_LABEL,
    SIGNING_KEY,
    PluginRef,
    child_name,
    owner_reference,
)

__all__ = ["CONFIG_KEY", "MANAGED_BY", "PLUGIN_LABEL", "SIGNING_KEY"]

SIGNING_PREFIX = "whsec_"


def secret_name(plugin: str) -> str:
    return child_name(plugin)


def new_signing_secret() -> str:
    """``whsec_`` + base64 of 24 random bytes (the Standard Webhooks secret format)."""
    return SIGNING_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def plugin_secret(
    ref: PluginRef, signing_secret: str, secret_config: Mapping[str, Any]
) -> dict[str, Any]:
    """The Secret body for the Plugin ``ref``. Without ``blockOwnerDeletion``: that needs
    permission on the owner's finalizers, and nothing waits for the Secret to go."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(ref.name),
            "namespace": ref.namespace,
            "labels": {**MANAGED_BY, PLUGIN_LABEL: label_value(ref.name)},
            "ownerReferences": [owner_reference(ref, block=False)],
        },
        "type": "Opaque",
        "data": data(signing_secret, secret_config),
    }


def data(signing_secret: str | None, secret_config: Mapping[str, Any]) -> dict[str, str]:
    """The Secret's ``data`` (base64 values); without the signing secret when None (a patch
    that leaves it as it is)."""
    encoded = {CONFIG_KEY: _encode(json.dumps(dict(secret_config), sort_keys=True))}
    if signing_secret is not None:
        encoded[SIGNING_KEY] = _encode(signing_secret)
    return encoded


def owned_by(secret: Mapping[str, Any], plugin_uid: str) -> bool:
    """Whether ``secret`` is the Secret of the Plugin ``plugin_uid`` (its controller owner)."""
    return any(
        ref.get("kind") == "Plugin" and ref.get("uid") == plugin_uid and ref.get("controller")
        for ref in (secret.get("metadata") or {}).get("ownerReferences") or []
    )


def _value(secret: Mapping[str, Any], key: str) -> str | None:
    raw = (secret.get("data") or {}).get(key)
    if not isinstance(raw, str):
        return None
    try:
        return base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def signing_secret(secret: Mapping[str, Any]) -> str | None:
    return _value(secret, SIGNING_KEY)


def secret_config(secret: Mapping[str, Any]) -> dict[str, Any] | str:
    """The secret configuration the Secret holds ({} when it holds none), or why it cannot be
    read."""
    if (secret.get("data") or {}).get(CONFIG_KEY) is None:
        return {}
    try:
        value = json.loads(_value(secret, CONFIG_KEY) or "")
    except ValueError:
        return f"{CONFIG_KEY} of the Secret is not JSON"
    if not isinstance(value, dict):
        return f"{CONFIG_KEY} of the Secret must hold an object"
    return value
