"""The multi-user routes in the OpenAPI document (issue 19): users and groups, and the usage
report. ``openapi`` adds their operations and component schemas to the document."""

from __future__ import annotations

from streamspace_facade.openapi_ops import Op, paged, path_param, query_param
from streamspace_facade.openapi_schemas import (
    ROLE,
    Schema,
    _array,
    _bool,
    _enum,
    _list,
    _request,
    _response,
    _time,
    string,
)
from streamspace_facade.usage import MEASURES, PRICES
from streamspace_facade.users import MAX_ADMIN_GROUPS

USER = path_param("The user's id (their user name).")
GROUP = string("A group name.", pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$")

USER_OPERATIONS: tuple[Op, ...] = (
    Op("get", "/api/v1/users", "listUsers", "Users who have signed in or own an API key "
       "(operator), by id", {200: "UserList"}, (403, 422),
       (query_param("group", "Only members of this group (either source)."), *paged())),
    Op("get", "/api/v1/users/{id}", "getUser", "One user (the user themself, operators and "
       "admins; others get 404)", {200: "User"}, (404,), (USER,)),
    Op("patch", "/api/v1/users/{id}", "updateUser", "Set a user's admin groups, disabled flag, "
       "email or name (admin); the role comes from the identity provider or API key only",
       {200: "User"}, (403, 404, 422), (USER,), body="UserPatch"),
    Op("delete", "/api/v1/users/{id}", "deleteUser", "Forget a user and revoke their API keys "
       "(admin); their sessions stay. A user who signs in again gets a new row",
       {204: None}, (403, 404, 422), (USER,)),
)  # fmt: skip


NUMBER: Schema = {"type": "number", "minimum": 0}
USAGE_OPERATIONS: tuple[Op, ...] = (
    Op("get", "/api/v1/analytics/usage", "usageReport", "Session-hours running and "
       "hibernated, CPU-hours, memory GiB-hours and GPU-hours requested, per user, template or "
       "namespace, from the mirror's history (users: their own only). Prices per unit add a "
       "cost estimate", {200: "UsageReport"}, (422, 503),
       (query_param("from", "Start (RFC 3339; default: 30 days before to).",
                    string(format="date-time")),
        query_param("to", "End (RFC 3339; default: now).", string(format="date-time")),
        query_param("groupBy", "What a row is.", _enum("Grouping.", "user", "template",
                                                        "namespace")),
        query_param("user", "Only this user's (operators and admins)."),
        *(query_param(name, f"Price of one unit of {measure}.", NUMBER)
          for name, measure in PRICES.items()))),
)  # fmt: skip

USAGE_FIGURES: dict[str, Schema] = {
    name: {"type": "number", "description": f"{name}, four decimals."} for name in MEASURES
}


def tenancy_schemas() -> dict[str, Schema]:
    figures = {**USAGE_FIGURES, "cost": {"type": "number", "description": "When priced."}}
    return {
        "UsageReport": _response(
            {
                "from": _time("Window start."),
                "to": _time("Window end."),
                "groupBy": string(),
                "items": _array(
                    {"type": "object", "properties": {"key": string(), **figures}},
                    "One per user, template or namespace with any hours, by key.",
                ),
                "totals": {"type": "object", "properties": figures},
                "prices": {
                    "type": "object",
                    "description": "The prices the query gave (empty: no cost estimate).",
                    "additionalProperties": NUMBER,
                },
            }
        ),
        "User": _response(
            {
                "id": string("The user name, a DNS label."),
                "email": string(nullable=True),
                "name": string("Display name.", nullable=True),
                "role": ROLE,
                "groups": _array(GROUP, "Every group: the identity provider's and the admin's."),
                "identityProviderGroups": _array(GROUP, "As the last credential said."),
                "adminGroups": _array(GROUP, "Set by an admin."),
                "disabled": _bool("Refused (403 USER_DISABLED) while true."),
                "createdAt": _time("First seen."),
                "lastLogin": _time("Last browser sign-in.", nullable=True),
            }
        ),
        "UserList": _list("users", "User"),
        "UserPatch": _request(
            {
                "groups": _array(GROUP, "Replaces the admin groups.", maxItems=MAX_ADMIN_GROUPS),
                "disabled": _bool("Refuse every request of this user (not yourself)."),
                "email": string(maxLength=256),
                "name": string(maxLength=256),
            }
        ),
    }
