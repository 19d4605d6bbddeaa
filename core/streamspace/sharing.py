"""Who may do what with a session: its owner, the users in ``spec.sharedWith``, and nobody else.

Pure functions over a Session's ``spec`` (decision 175). Access levels, weakest first:

* ``view``: sees the session (REST and the streams), never connects nor passes the gate;
* ``control``: also connects and passes the access gate (uses the desktop);
* ``owner``: also changes, deletes, shares and revokes it.

Operators and admins act on every session through their role (``admin`` in the API's ``access``
field when the session is not their own); the gate still admits only ``owner`` and ``control``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VIEW = "view"
CONTROL = "control"
OWNER = "owner"
ADMIN = "admin"
SHARED = (VIEW, CONTROL)
"""The access levels a share grants (``sharedWith[].access``)."""
RANK = {VIEW: 0, CONTROL: 1, OWNER: 2}
MAX_SHARES = 32
"""``maxItems`` of ``spec.sharedWith`` in crds/session.yaml."""


def owner_of(spec: Mapping[str, Any]) -> str:
    return str(spec.get("user", ""))


def shares(spec: Mapping[str, Any]) -> dict[str, str]:
    """``spec.sharedWith`` as user → access (the API server keeps users unique)."""
    found: dict[str, str] = {}
    for entry in spec.get("sharedWith") or ():
        if isinstance(entry, Mapping) and entry.get("access") in SHARED:
            found[str(entry.get("user", ""))] = str(entry["access"])
    return found


def access_of(spec: Mapping[str, Any], user: str) -> str | None:
    """``owner``, ``control`` or ``view`` for ``user`` on the session; None: no access."""
    if user and owner_of(spec) == user:
        return OWNER
    return shares(spec).get(user) if user else None


def allows(access: str | None, need: str) -> bool:
    """Whether ``access`` is at least ``need`` (``view``, ``control`` or ``owner``)."""
    return access is not None and access in RANK and RANK[access] >= RANK[need]


def audience(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Every user who sees the session: the owner first, then the shared users."""
    return (owner_of(spec), *shares(spec))


def shared_with(spec: Mapping[str, Any], user: str, access: str | None) -> list[dict[str, str]]:
    """``spec.sharedWith`` with ``user`` given ``access`` (None: removed), in a stable order."""
    entries = shares(spec)
    if access is None:
        entries.pop(user, None)
    else:
        entries[user] = access
    return [{"user": u, "access": entries[u]} for u in sorted(entries)]


def lost_control(before: Mapping[str, Any], after: Mapping[str, Any]) -> set[str]:
    """The users who could connect before a change and cannot after it: their connections
    to the session end at once."""
    could = {u for u in audience(before) if allows(access_of(before, u), CONTROL)}
    return {u for u in could if not allows(access_of(after, u), CONTROL)}
