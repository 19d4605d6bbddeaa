"""Who controls an object: its controller owner reference, read as pure functions.

The operator finds a session's children by name, and a name proves nothing: anyone who can
create a Deployment can name it like a session. An object is the session's only when its
controller owner reference carries the Session's uid; anything else under that name is a
conflict to report, never something to scale, delete or adopt.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamspace import API_GROUP, API_VERSION

NAME_CONFLICT = "NameConflict"


def controller_reference(kind: str, name: str, uid: str, *, block: bool = True) -> dict[str, Any]:
    """Our kind ``kind`` (``name``, ``uid``) as the controller owner reference of a child.
    ``block``: ``blockOwnerDeletion``, which needs permission on the owner's finalizers."""
    reference: dict[str, Any] = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
    }
    if block:
        reference["blockOwnerDeletion"] = True
    return reference


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """``obj``'s controller owner reference, None when nothing controls it."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return dict(ref)
    return None


def controller_uid(obj: Mapping[str, Any]) -> str | None:
    """The uid in ``obj``'s controller owner reference, None when nothing controls it."""
    ref = controller(obj)
    return None if ref is None else str(ref.get("uid") or "") or None


def controller_of_kind(
    obj: Mapping[str, Any], api_version: str, kind: str
) -> tuple[str, str] | None:
    """(name, uid) of ``obj``'s controller when it is a ``kind`` of ``api_version``, else None."""
    ref = controller(obj)
    if ref is None or ref.get("apiVersion") != api_version or ref.get("kind") != kind:
        return None
    name, uid = str(ref.get("name") or ""), str(ref.get("uid") or "")
    return (name, uid) if name and uid else None


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    return bool(owner_uid) and controller_uid(obj) == owner_uid


def object_uid(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("uid") or "")


def resource_version(obj: Mapping[str, Any]) -> int:
    """The resourceVersion as a number (etcd's revision), to tell the newer of two copies of one
    object; -1 when it is not one, so that such a copy never counts as the newer."""
    raw = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(raw) if raw.isdigit() else -1
