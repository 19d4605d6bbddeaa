"""The default security context of session pods, and which Linux capabilities they keep.

Every session container drops all capabilities, may not gain privileges (``no_new_privs``) and
runs under the runtime's default seccomp profile. A capability comes back only when the
template lists it in ``capabilities`` *and* the administrator allows it
(``ALLOWED_CAPABILITIES``): a template author alone cannot grant one. Pure functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_NAME = re.compile(r"^[A-Z][A-Z0-9_]{1,31}$")


def capability_name(raw: str) -> str | None:
    """``net_bind_service``, ``CAP_NET_BIND_SERVICE`` → ``NET_BIND_SERVICE``; None when the
    text cannot be a Linux capability (templates also list features such as ``Audio``)."""
    name = raw.strip().upper()
    name = name.removeprefix("CAP_")
    return name if _NAME.fullmatch(name) and name != "ALL" else None


def kept_capabilities(declared: Iterable[str], allowed: Iterable[str]) -> list[str]:
    """The capabilities a session container gets back: declared by the template and allowed."""
    permitted = {n for n in (capability_name(a) for a in allowed) if n}
    return sorted({n for n in (capability_name(d) for d in declared) if n in permitted})


def pod_security_context() -> dict[str, Any]:
    return {"seccompProfile": {"type": "RuntimeDefault"}}


def container_security_context(keep: list[str]) -> dict[str, Any]:
    capabilities: dict[str, Any] = {"drop": ["ALL"]}
    if keep:
        capabilities["add"] = list(keep)
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": capabilities,
    }
