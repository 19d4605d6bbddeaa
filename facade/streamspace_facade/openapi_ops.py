"""The building blocks of the OpenAPI document's operations: the error answers every route may
give, parameters, and ``Op`` (one route). ``openapi`` and ``openapi_plugins`` list operations
with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamspace_facade.openapi_schemas import Schema, ref, string

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The body is not a JSON object, or Kubernetes refused it as malformed."),
    401: ("Unauthorized", "No valid Bearer credential (or webhook signature)."),
    403: (
        "Forbidden",
        "The caller's role does not allow this, or (code LIMIT_EXCEEDED) it asks for more than "
        "an admin-set limit allows; details.limit names the setting; or (code QUOTA_EXCEEDED: "
        "create, wake, connect to a hibernated session) the caller's SessionQuota does not "
        "admit it; details: quota, resource, used, allowed.",
    ),
    404: ("NotFound", "No such object, or one the caller may not see."),
    409: ("Conflict", "It exists already, or its state does not allow this."),
    413: ("TooLarge", "The body is larger than 1 MiB."),
    422: ("Invalid", "The request failed validation; details.fields says where and why."),
    426: ("UpgradeRequired", "A WebSocket stream was requested without the upgrade."),
    429: (
        "TooManyRequests",
        "A limit was reached (code RATE_LIMITED or TOO_MANY_STREAMS; details.limit names the "
        "setting); retry after the Retry-After header's seconds where one is given.",
    ),
    502: ("BadGateway", "The Kubernetes API answered with an unexpected error."),
    503: ("Unavailable", "PostgreSQL, Kubernetes or the identity provider is unreachable."),
}
SUCCESS = {
    101: "Switching to the WebSocket protocol; the messages are described in the summary.",
    200: "OK.",
    201: "Created.",
    202: "Accepted: the operator acts on it.",
    204: "Done.",
    302: "Found: the browser goes on to the Location header.",
    304: "Not modified: the If-None-Match header named this answer's ETag; no body.",
}
ETAG = {
    "ETag": {
        "description": "A strong tag of this answer (its body, and -gzip when compressed); "
        "send it as If-None-Match to get a 304 while nothing changed.",
        "schema": {"type": "string"},
    }
}
KUBE = (502, 503)
"""What every route that calls the Kubernetes API may also answer."""


def path_param(description: str, schema: Schema | None = None) -> Schema:
    schema = schema or string(minLength=1, maxLength=253)
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def named_path_param(name: str, description: str) -> Schema:
    return {**path_param(description), "name": name}


def query_param(name: str, description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema or string(),
        **extra,
    }


def paged(default: int = 100, maximum: int = 1000, *, numbered: bool = False) -> tuple[Schema, ...]:
    """The paging parameters of a list (``paging``): ``limit`` and ``continue``, and ``page``
    where the seed API paged by number."""
    params = [
        query_param(
            "limit",
            "Items per page.",
            {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        ),
        query_param(
            "continue",
            "The continue token of the previous page (opaque; bound to this list and its "
            "filters: another list's, or an altered one, is a 422).",
            string(maxLength=2048),
        ),
    ]
    if numbered:
        params.append(
            query_param(
                "page",
                "Numbered paging (from 1), kept for the seed API's clients; not with continue.",
                {"type": "integer", "minimum": 1, "maximum": 1_000_000},
            )
        )
    return tuple(params)


def header_param(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "description": description, "schema": string()}


@dataclass(frozen=True)
class Op:
    """One route: what it answers on success (status → schema name, None: no body) and else."""

    method: str
    path: str
    operation_id: str
    summary: str
    ok: dict[int, str | None]
    errors: tuple[int, ...] = ()
    parameters: tuple[Schema, ...] = ()
    body: str | None = None
    public: bool = False

    def render(self, tag: str) -> Schema:
        codes = set(self.errors) | (set() if self.public else {401, 503})
        op: Schema = {"operationId": self.operation_id, "summary": self.summary, "tags": [tag]}
        if self.public:
            op["security"] = []
        if self.parameters:
            op["parameters"] = list(self.parameters)
        if self.body is not None:
            codes |= {400, 413, 422}
            content = {"application/json": {"schema": ref(self.body)}}
            op["requestBody"] = {"required": True, "content": content}
        responses: dict[str, Schema] = {}
        for status, name in self.ok.items():
            responses[str(status)] = {"description": SUCCESS[status]}
            if name is not None:
                responses[str(status)]["content"] = {"application/json": {"schema": ref(name)}}
                if self.method == "get" and status == 200:
                    responses["200"]["headers"] = ETAG
                    responses["304"] = {"description": SUCCESS[304], "headers": ETAG}
        for status in sorted(codes):
            responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
        op["responses"] = responses
        return op
