"""The sharing routes in the OpenAPI document (issue 19, item 3): share, list shares, revoke and
transfer, their component schemas, and the fields sharing adds to a Session's view.
``openapi`` adds them to the document.
"""

from __future__ import annotations

from streamspace import sharing
from streamspace_facade.openapi_ops import KUBE, Op, named_path_param, path_param
from streamspace_facade.openapi_schemas import (
    USER,
    Schema,
    _array,
    _enum,
    _request,
    _response,
    string,
)

S = "/api/v1/sessions/{id}"
SESSION = path_param("The Session's id (its name).")
SHARED_USER = named_path_param("user", "The user whose share is revoked.")
SHARE_ACCESS = _enum(
    "view: sees the session; control: also connects and passes the access gate.", *sharing.SHARED
)
SHARE: Schema = {
    "type": "object",
    "required": ["user", "access"],
    "properties": {"user": USER, "access": SHARE_ACCESS},
}
SESSION_FIELDS: dict[str, Schema] = {
    "sharedWith": _array(SHARE),
    "access": _enum(
        "The caller's access: owner, control or view (a share), admin (through the caller's "
        "operator or admin role). Absent in plugin events.",
        sharing.OWNER,
        sharing.CONTROL,
        sharing.VIEW,
        sharing.ADMIN,
    ),
}
"""Added to the ``Session`` schema."""

SHARING_OPERATIONS = (
    Op("get", S + "/shares", "listSessionShares", "Who the session is shared with (anyone who "
       "sees it)", {200: "SessionShares"}, (404, 409, *KUBE), (SESSION,)),
    Op("post", S + "/shares", "shareSession", "Share the session with a user, or change their "
       "access (owner, operators, admins; lowering control to view ends their connections)",
       {200: "SessionShares"}, (403, 404, 409, *KUBE), (SESSION,), body="ShareRequest"),
    Op("delete", S + "/shares/{user}", "revokeSessionShare", "Revoke a user's share: their "
       "connections end and the access gate refuses them at once", {204: None},
       (403, 404, 409, *KUBE), (SESSION, SHARED_USER)),
    Op("post", S + "/transfer", "transferSession", "Give a hibernated or terminated session "
       "to another user (admins); the previous owner keeps no access", {200: "Session"},
       (403, 404, 409, *KUBE), (SESSION,), body="TransferRequest"),
)  # fmt: skip


def sharing_schemas() -> dict[str, Schema]:
    return {
        "SessionShares": _response(
            {
                "sessionId": string(),
                "owner": string("The session's owner."),
                "shares": _array(SHARE),
            }
        ),
        "ShareRequest": _request(
            {"user": USER, "access": SHARE_ACCESS},
            required=["user", "access"],
            example={"user": "bob", "access": "control"},
        ),
        "TransferRequest": _request(
            {"user": {**USER, "description": "The new owner."}},
            required=["user"],
            example={"user": "bob"},
        ),
    }
