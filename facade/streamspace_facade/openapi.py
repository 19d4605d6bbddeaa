"""The OpenAPI 3.0 document at ``/api/v1/openapi.json``: every route of the facade, by hand.

It is written as data beside the handlers rather than derived from them, because it is a
contract: ``tests/e2e/test_openapi.py`` checks that it names exactly the app's routes, and runs
Schemathesis against a live facade to check that every answer matches it. A handler that
changes what it accepts or returns changes this document in the same commit.

Conventions: bodies are camelCase JSON; handlers reject unknown request fields (422), hence
``additionalProperties: false``; response fields a handler always writes are ``required``, and
those that may be null are ``nullable``; every failure is an ``Error``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from streamspace import __version__
from streamspace.naming import DNS_LABEL, DNS_SUBDOMAIN
from streamspace_facade.sessions import TAG_PATTERN
from streamspace_facade.state import DURATION

Schema = dict[str, Any]

QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# --- schema helpers -----------------------------------------------------------------------------


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _str(description: str = "", **keywords: Any) -> Schema:
    return {"type": "string", **({"description": description} if description else {}), **keywords}


def _enum(description: str, *values: str, nullable: bool = False) -> Schema:
    if nullable:  # OpenAPI 3.0: a nullable enum lists null among its values
        return {
            "type": "string",
            "description": description,
            "nullable": True,
            "enum": [*values, None],
        }
    return {"type": "string", "description": description, "enum": list(values)}


def _int(description: str = "", **keywords: Any) -> Schema:
    return {"type": "integer", **({"description": description} if description else {}), **keywords}


def _bool(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def _time(description: str, *, nullable: bool = False) -> Schema:
    schema = _str(description, format="date-time")
    return {**schema, "nullable": True} if nullable else schema


def _nullable(schema: Schema) -> Schema:
    return {**schema, "nullable": True}


def _array(items: Schema, description: str = "", **keywords: Any) -> Schema:
    return {
        "type": "array",
        "items": items,
        **({"description": description} if description else {}),
        **keywords,
    }


def _response(properties: dict[str, Schema], description: str = "") -> Schema:
    """An object the facade writes: every property is always present."""
    schema: Schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"description": description, **schema} if description else schema


def _request(properties: dict[str, Schema], required: Iterable[str] = (), **extra: Any) -> Schema:
    """An object the facade reads: anything else is an unknown field (422)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return {**schema, **extra}


def _list(key: str, item: str, **paging: Schema) -> Schema:
    return _response(
        {key: _array(_ref(item)), "total": _int("How many items there are.", minimum=0), **paging}
    )


# --- component schemas --------------------------------------------------------------------------

OBJECT_NAME = _str("A Kubernetes object name.", pattern=DNS_SUBDOMAIN.pattern, maxLength=253)
USER = _str("A user name: a DNS label.", pattern=DNS_LABEL.pattern, maxLength=63)
DURATION_STRING = _str("A duration like 90s, 30m or 8h.", pattern=DURATION.pattern, maxLength=16)
ROLE = _enum("A role.", "user", "operator", "admin")
STATE = _enum("The state the user asked for.", "running", "hibernated", "terminated")
PHASE = _enum(
    "What the operator observed (Pending until it has).",
    "Pending",
    "Running",
    "Hibernated",
    "Failed",
    "Terminated",
)
APP_TYPE = _enum("desktop (streamed over VNC) or webapp (served over HTTP).", "desktop", "webapp")
CONNECTION_STATE = _enum("The connection's state.", "active", "stale", "disconnected")
TAGS = _array(
    _str("A tag.", pattern=TAG_PATTERN, minLength=1, maxLength=63),
    "Labels for finding sessions.",
    maxItems=32,
    uniqueItems=True,
)
QUANTITY_VALUE: Schema = {
    "description": "A Kubernetes quantity such as 500m, 2 or 1Gi.",
    "anyOf": [_str(pattern=QUANTITY, maxLength=64), {"type": "number", "minimum": 0}],
}
QUANTITY_MAP: Schema = {
    "type": "object",
    "maxProperties": 16,
    "additionalProperties": QUANTITY_VALUE,
}
RESOURCES_REQUEST: Schema = {
    "description": "Flat {cpu, memory} (requests and limits both) or {requests, limits} maps.",
    "anyOf": [
        _request({"cpu": QUANTITY_VALUE, "memory": QUANTITY_VALUE}),
        _request({"requests": QUANTITY_MAP, "limits": QUANTITY_MAP}),
    ],
}
RESOURCES_RESPONSE: Schema = {
    "type": "object",
    "description": "The session's own requests and limits ({} when it uses the template's).",
    "properties": {
        part: {"type": "object", "additionalProperties": {"anyOf": [_str(), {"type": "integer"}]}}
        for part in ("requests", "limits")
    },
}
SESSION_SPEC: dict[str, Schema] = {
    "state": STATE,
    "resources": RESOURCES_REQUEST,
    "persistentHome": _bool("Mount the user's home volume (default true)."),
    "idleTimeout": {**DURATION_STRING, "description": "Hibernate after this long idle (30m)."},
    "maxSessionDuration": {**DURATION_STRING, "description": "Terminate after this long (8h)."},
    "tags": TAGS,
}

PORT = _int("A port number.", minimum=1, maximum=65535)
VNC: Schema = {
    "type": "object",
    "properties": {
        "enabled": _bool("Streamed over VNC."),
        "port": PORT,
        "protocol": _str(maxLength=64),
    },
}
TEMPLATE_SPEC: dict[str, Schema] = {
    "displayName": _str("Name shown in catalogs.", maxLength=256),
    "baseImage": _str("Container image.", minLength=1, maxLength=1024, pattern=r"^[^\s]+$"),
    "description": _str(maxLength=4096),
    "category": _str(maxLength=256),
    "icon": _str("URL of an icon.", maxLength=2048),
    "tags": _array(_str(maxLength=128), maxItems=64),
    "appType": APP_TYPE,
    "defaultResources": {
        "description": "Flat {cpu, memory} or {requests, limits} maps.",
        "anyOf": [
            _request({"cpu": QUANTITY_VALUE, "memory": QUANTITY_VALUE}),
            _request({"requests": QUANTITY_MAP, "limits": QUANTITY_MAP}),
        ],
    },
    "ports": _array(
        {
            "type": "object",
            "required": ["containerPort"],
            "properties": {
                "name": _str(pattern=DNS_LABEL.pattern, maxLength=15),
                "containerPort": PORT,
                "protocol": _enum("Transport protocol.", "TCP", "UDP", "SCTP"),
            },
        },
        maxItems=32,
    ),
    "env": _array(
        {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": _str(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", maxLength=256),
                "value": _str(maxLength=32768),
            },
        },
        maxItems=128,
    ),
    "volumeMounts": _array(
        {
            "type": "object",
            "required": ["name", "mountPath"],
            "properties": {
                "name": _str(pattern=DNS_LABEL.pattern, maxLength=63),
                "mountPath": _str(pattern="^/", maxLength=1024),
            },
        },
        maxItems=32,
    ),
    "vnc": VNC,
    "kasmvnc": {**VNC, "description": "Legacy name of vnc."},
    "webapp": {
        "type": "object",
        "properties": {
            "enabled": _bool("Served over HTTP."),
            "port": PORT,
            "path": _str(maxLength=1024),
            "healthCheck": _str(maxLength=1024),
        },
    },
    "capabilities": _array(_str(maxLength=64), maxItems=32),
}

ERROR_CODES = (
    "BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT, TOO_LARGE, "
    "VALIDATION_FAILED, KUBERNETES_ERROR, UNAVAILABLE"
)


def _schemas() -> dict[str, Schema]:
    return {
        "Error": _response(
            {
                "error": _str("What went wrong, for people."),
                "code": _str(f"A stable code: {ERROR_CODES}."),
                "details": {"type": "object", "description": "e.g. fields: path → problem"},
            },
            "Every failure.",
        ),
        "Session": _response(
            {
                "id": _str("The Session's name: <user>-<template>-<8 hex>."),
                "name": _str("Same as id."),
                "namespace": _str(),
                "user": _str("The owner."),
                "template": _str("The Template's name."),
                "state": STATE,
                "phase": PHASE,
                "status": {**PHASE, "description": "Same as phase (older clients)."},
                "url": _nullable(_str("Where the session is reached, once running.")),
                "podName": _nullable(_str("The session's pod, once running.")),
                "activeConnections": _int("Connections now open.", minimum=0),
                "resources": RESOURCES_RESPONSE,
                "persistentHome": _bool("Whether the user's home volume is mounted."),
                "idleTimeout": _nullable(_str("Hibernate after this long idle.")),
                "maxSessionDuration": _nullable(_str("Terminate after this long.")),
                "tags": _array(_str()),
                "lastActivity": _time("Last connect, heartbeat or disconnect.", nullable=True),
                "idleDeadline": _time("When it hibernates if nothing happens.", nullable=True),
                "startedAt": _time("When it last started running.", nullable=True),
                "hibernatedAt": _time("When it last hibernated.", nullable=True),
                "createdAt": _time("When it was created."),
            }
        ),
        "SessionList": _list("sessions", "Session"),
        "SessionCreate": _request(
            {
                "user": {**USER, "description": "The owner (admins only; default: the caller)."},
                "template": {**OBJECT_NAME, "description": "The Template to run."},
                **SESSION_SPEC,
            },
            required=["template"],
            example={
                "template": "firefox",
                "resources": {"memory": "1Gi", "cpu": "500m"},
                "tags": ["demo"],
            },
        ),
        "SessionPatch": _request(SESSION_SPEC, minProperties=1, example={"state": "hibernated"}),
        "Connection": _response(
            {
                "id": _str("The Connection's name."),
                "connectionId": _str("Same as id."),
                "sessionId": _str(),
                "user": _str(),
                "clientIP": _nullable(_str()),
                "userAgent": _nullable(_str()),
                "state": CONNECTION_STATE,
                "connectedAt": _time("When the operator saw it.", nullable=True),
                "lastHeartbeat": _time("The last heartbeat.", nullable=True),
                "createdAt": _time("When it was created."),
            }
        ),
        "ConnectionList": _list("connections", "Connection"),
        "ConnectResult": _response(
            {
                "connectionId": _str("Send it with heartbeats and the disconnect."),
                "sessionUrl": _nullable(_str("Where the session is reached, once running.")),
                "state": STATE,
                "phase": PHASE,
                "ready": _bool("Running and reachable now (otherwise it is starting)."),
            }
        ),
        "DisconnectResult": _response(
            {"connectionId": _str(), "disconnected": {"type": "boolean", "enum": [True]}}
        ),
        "HeartbeatResult": _response(
            {"connectionId": _str(), "lastHeartbeat": _time("Now."), "state": CONNECTION_STATE}
        ),
        "Template": {
            "type": "object",
            "description": "The Template's spec fields, plus these.",
            "required": ["id", "name", "namespace", "appType", "valid", "message", "createdAt"],
            "properties": {
                **TEMPLATE_SPEC,
                "id": _str("The Template's name."),
                "name": _str("Same as id."),
                "namespace": _str(),
                "appType": APP_TYPE,
                "valid": {
                    **_bool("Whether sessions can run it (null until checked)."),
                    "nullable": True,
                },
                "message": _nullable(_str("Why it is invalid, or a summary.")),
                "createdAt": _time("When it was created."),
            },
        },
        "TemplateList": _list("templates", "Template"),
        "TemplateCreate": {
            "description": "{name, spec}, or flat: name beside the spec fields.",
            "anyOf": [
                _request(
                    {"name": OBJECT_NAME, "spec": _ref("TemplateSpec")}, required=["name", "spec"]
                ),
                {
                    "type": "object",
                    "required": ["name", "baseImage"],
                    "properties": {"name": OBJECT_NAME, **TEMPLATE_SPEC},
                },
            ],
            "example": {
                "name": "firefox",
                "spec": {
                    "displayName": "Firefox",
                    "baseImage": "lscr.io/linuxserver/firefox",
                    "vnc": {"enabled": True, "port": 3000},
                },
            },
        },
        "TemplateSpec": {"type": "object", "required": ["baseImage"], "properties": TEMPLATE_SPEC},
        "CatalogTemplate": _response(
            {
                "id": _int("The catalog entry's id (install it with this).", format="int64"),
                "name": _str("The Template name it installs as."),
                "displayName": _str(),
                "description": _str(),
                "category": _str(),
                "appType": APP_TYPE,
                "icon": _nullable(_str()),
                "baseImage": _str(),
                "tags": _array(_str()),
                "installCount": _int("How often it was installed.", minimum=0),
                "sourcePath": _str("The file it came from in the repository."),
                "repository": _response({"id": _str(), "url": _str()}),
                "updatedAt": _time("When the sync last wrote it."),
            }
        ),
        "CatalogTemplateList": _list(
            "templates",
            "CatalogTemplate",
            page=_int("This page (from 1).", minimum=1),
            limit=_int("Items per page.", minimum=1, maximum=100),
        ),
        "Repository": _response(
            {
                "id": _str("The TemplateRepository's name."),
                "name": _str("Same as id."),
                "namespace": _str(),
                "url": _str(),
                "branch": _str(),
                "type": _enum("What it holds.", "template", "plugin"),
                "authType": _enum("How it is fetched.", "none", "token", "basic", "ssh"),
                "syncInterval": _nullable(_str("Sync every (default from SYNC_INTERVAL).")),
                "autoInstall": _bool("Templates are also installed as Template objects."),
                "suspend": _bool("Not synced while true."),
                "status": _enum("Sync status.", "pending", "syncing", "synced", "failed"),
                "message": _nullable(_str("What the last sync found or why it failed.")),
                "lastSync": _time("When it last synced.", nullable=True),
                "lastSyncCommit": _nullable(_str("The commit last synced.")),
                "templateCount": _int("Templates found.", minimum=0),
                "pluginCount": _int("Plugins found.", minimum=0),
                "createdAt": _time("When it was created."),
            }
        ),
        "RepositoryList": _list("repositories", "Repository"),
        "RepositoryCreate": _request(
            {
                "name": _str("Default: from the URL.", pattern=DNS_LABEL.pattern, maxLength=58),
                "url": _str("https:// or ssh:// (or user@host:path).", minLength=1, maxLength=2048),
                "branch": _str(
                    "Default main.", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", maxLength=255
                ),
                "type": _enum("Default template.", "template", "plugin"),
                "authType": _enum("Default none.", "none", "token", "basic", "ssh"),
                "authSecret": {**OBJECT_NAME, "description": "An existing Secret instead."},
                "token": _str("authType token."),
                "username": _str("authType basic."),
                "password": _str("authType basic."),
                "sshPrivateKey": _str("authType ssh."),
                "knownHosts": _str("authType ssh."),
                "syncInterval": DURATION_STRING,
                "autoInstall": _bool("Also install every template as a Template."),
                "suspend": _bool("Do not sync."),
            },
            required=["url"],
            example={"url": "https://github.com/example/templates.git", "branch": "main"},
        ),
        "SyncResult": _response(
            {
                "repositories": _array(_str(), "Repositories asked to sync."),
                "total": _int("How many.", minimum=0),
            }
        ),
        "WebhookResult": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": _enum("What was done.", "accepted", "ignored", "duplicate"),
                "reason": _str("Why it was ignored."),
                "repositories": _array(_str(), "Repositories asked to sync."),
                "total": _int("How many.", minimum=0),
            },
        },
        "Me": _response({"user": _str(), "role": ROLE, "via": _enum("How.", "jwt", "apikey")}),
        "ApiKey": _response(
            {
                "id": _int("Revoke it with this.", format="int64"),
                "user": _str(),
                "name": _str(),
                "prefix": _str("The key's first characters."),
                "role": ROLE,
                "createdAt": _time("When it was created."),
                "lastUsedAt": _time("Roughly when it was last used.", nullable=True),
                "revokedAt": _time("When it was revoked.", nullable=True),
            }
        ),
        "ApiKeyList": _list("apiKeys", "ApiKey"),
        "WebhookPush": {
            "type": "object",
            "description": "A GitHub or GitLab push, or generic {repository_url, branch?, ref?}.",
            "example": {"repository_url": "https://github.com/example/templates.git"},
        },
        "ApiKeyCreate": _request(
            {"user": USER, "role": ROLE, "name": _str("What it is for.")},
            required=["user", "role"],
            example={"user": "alice", "role": "user", "name": "ci"},
        ),
        "NewApiKey": _response(
            {
                "key": _str("The key: shown this once only.", pattern="^sk_"),
                "user": _str(),
                "role": ROLE,
                "name": _str(),
                "prefix": _str(),
            }
        ),
        "Health": _response(
            {
                "status": _enum("Serving.", "ok"),
                "mirror": _enum("This replica's mirror role.", "writer", "standby", nullable=True),
                "mirrorReady": _bool("The mirror has caught up with the API server."),
            }
        ),
        "Version": _response({"name": _str(), "version": _str(), "api": _str()}),
    }


# --- operations ---------------------------------------------------------------------------------

ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The body is not a JSON object, or Kubernetes refused it as malformed."),
    401: ("Unauthorized", "No valid Bearer credential (or webhook signature)."),
    403: ("Forbidden", "The caller's role does not allow this."),
    404: ("NotFound", "No such object, or one the caller may not see."),
    409: ("Conflict", "It exists already, or its state does not allow this."),
    413: ("TooLarge", "The body is larger than 1 MiB."),
    422: ("Invalid", "The request failed validation; details.fields says where and why."),
    426: ("UpgradeRequired", "A WebSocket stream was requested without the upgrade."),
    502: ("BadGateway", "The Kubernetes API answered with an unexpected error."),
    503: ("Unavailable", "PostgreSQL, Kubernetes or the identity provider is unreachable."),
}
SUCCESS = {
    101: "Switching to the WebSocket protocol; the messages are described in the summary.",
    200: "OK.",
    201: "Created.",
    202: "Accepted: the operator acts on it.",
    204: "Done.",
}
KUBE = (502, 503)
"""What every route that calls the Kubernetes API may also answer."""


def _path(description: str, schema: Schema | None = None) -> Schema:
    schema = schema or _str(minLength=1, maxLength=253)
    return {
        "name": "id",
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _named_path(name: str, description: str) -> Schema:
    return {**_path(description), "name": name}


def _query(name: str, description: str, schema: Schema | None = None, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": schema or _str(),
        **extra,
    }


def _header(name: str, description: str) -> Schema:
    return {"name": name, "in": "header", "description": description, "schema": _str()}


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
            content = {"application/json": {"schema": _ref(self.body)}}
            op["requestBody"] = {"required": True, "content": content}
        responses: dict[str, Schema] = {}
        for status, name in self.ok.items():
            responses[str(status)] = {"description": SUCCESS[status]}
            if name is not None:
                responses[str(status)]["content"] = {"application/json": {"schema": _ref(name)}}
        for status in sorted(codes):
            responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}
        op["responses"] = responses
        return op


SESSION = _path("The Session's id (its name).")
CONNECTION = _query("connectionId", "From the connect answer.", _str(minLength=1), required=True)
IN_NAMESPACE = _query(
    "namespace",
    "Only with ALL_NAMESPACES: the session's namespace, needed when its id is in several "
    "(409 otherwise); ignored when the facade serves one namespace.",
)
NAME = _path("The object's name.")
NUMBER = _path("The numeric id.", _int(minimum=1, format="int64"))
CATEGORY = _query("category", "Only of this category.")
TAG = _query("tag", "Only with this tag.")
SIGNATURES = (
    _header("X-Hub-Signature-256", "GitHub: sha256=<hex HMAC-SHA256 of the body>."),
    _header("X-GitHub-Event", "GitHub: push (other events are ignored)."),
    _header("X-GitHub-Delivery", "GitHub: the delivery id; a delivery is acted on once."),
    _header("X-Gitlab-Token", "GitLab: the shared secret."),
    _header("X-Gitlab-Event", "GitLab: Push Hook."),
    _header("X-Webhook-Signature", "Generic: hex HMAC-SHA256 of the body."),
)
S = "/api/v1/sessions/{id}"
STREAM_AUTH = (
    _query(
        "token",
        "For browsers: the bearer token (or send the subprotocols "
        "'streamspace.v1' and 'bearer.<token>').",
    ),
)

OPERATIONS: dict[str, tuple[Op, ...]] = {
    "meta": (
        Op("get", "/health", "health", "Liveness", {200: "Health"}, public=True),
        Op("get", "/version", "version", "Version", {200: "Version"}, public=True),
        Op("get", "/api/v1/openapi.json", "openapi", "This document", {200: None}, public=True),
        Op("get", "/metrics", "metrics", "Prometheus metrics (text exposition format)",
           {200: None}, public=True),
        Op("get", "/api/v1/me", "me", "Who the caller is", {200: "Me"}),
    ),
    "sessions": (
        Op("get", "/api/v1/sessions", "listSessions", "Sessions the caller may see (users: "
           "their own; ?user= is ignored for them)", {200: "SessionList"}, (422,),
           (_query("user", "Only this user's."), _query("state", "Only in this state.", STATE),
            _query("template", "Only of this Template."), TAG)),
        Op("post", "/api/v1/sessions", "createSession", "Create a session (owner: the caller; "
           "admins may name another user)", {201: "Session"}, (403, 409, *KUBE),
           body="SessionCreate"),
        Op("get", S, "getSession", "One session", {200: "Session"}, (404, 409, *KUBE),
           (SESSION, IN_NAMESPACE)),
        Op("patch", S, "updateSession", "Change state, resources, timeouts or tags",
           {200: "Session"}, (404, 409, *KUBE), (SESSION, IN_NAMESPACE), body="SessionPatch"),
        Op("delete", S, "deleteSession", "Delete a session and its workload", {204: None},
           (404, 409, *KUBE), (SESSION, IN_NAMESPACE)),
    ),
    "connections": (
        Op("get", S + "/connect", "connectSession", "Open a connection (wakes a hibernated "
           "session)", {200: "ConnectResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE)),
        Op("delete", S + "/disconnect", "disconnectSession", "Close a connection",
           {200: "DisconnectResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("post", S + "/disconnect", "disconnectSessionPost", "Close a connection (alias)",
           {200: "DisconnectResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("post", S + "/heartbeat", "heartbeat", "Keep a connection alive (every 30 s)",
           {200: "HeartbeatResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("get", S + "/connections", "listConnections", "A session's open connections",
           {200: "ConnectionList"}, (404, 409, *KUBE), (SESSION, IN_NAMESPACE)),
    ),
    "templates": (
        Op("get", "/api/v1/templates", "listTemplates", "Installed templates",
           {200: "TemplateList"}, KUBE, (CATEGORY,)),
        Op("post", "/api/v1/templates", "createTemplate", "Install a template (operator)",
           {201: "Template"}, (403, 409, *KUBE), body="TemplateCreate"),
        Op("get", "/api/v1/templates/{id}", "getTemplate", "One template", {200: "Template"},
           (404, *KUBE), (NAME,)),
        Op("delete", "/api/v1/templates/{id}", "deleteTemplate", "Remove a template (operator)",
           {204: None}, (403, 404, *KUBE), (NAME,)),
    ),
    "catalog": (
        Op("get", "/api/v1/catalog/templates", "listCatalog", "Templates found in repositories, "
           "a page at a time", {200: "CatalogTemplateList"}, (422,),
           (CATEGORY, TAG, _query("search", "In the name, display name or description."),
            _query("appType", "Only of this app type.", APP_TYPE),
            _query("page", "From 1.", _int(minimum=1, maximum=1_000_000, default=1)),
            _query("limit", "Per page.", _int(minimum=1, maximum=100, default=20)))),
        Op("post", "/api/v1/catalog/templates/{id}/install", "installCatalogTemplate",
           "Install a catalog entry as a Template (operator)", {201: "Template"},
           (403, 404, 409, 422, *KUBE), (NUMBER,)),
        Op("post", "/api/v1/catalog/sync", "syncCatalog", "Sync every repository now "
           "(operator)", {202: "SyncResult"}, (403, *KUBE)),
    ),
    "repositories": tuple(
        op
        for base, alias in (("/api/v1/repositories", ""), ("/api/v1/catalog/repositories", "Alias"))
        for op in (
            Op("get", base, f"listRepositories{alias}", "Template repositories",
               {200: "RepositoryList"}),
            Op("post", base, f"createRepository{alias}", "Add a repository (operator)",
               {201: "Repository"}, (403, 409, *KUBE), body="RepositoryCreate"),
            Op("delete", base + "/{id}", f"deleteRepository{alias}", "Remove a repository "
               "(operator)", {204: None}, (403, 404, *KUBE), (NAME,)),
            Op("post", base + "/{id}/sync", f"syncRepository{alias}", "Sync a repository now "
               "(operator)", {202: "SyncResult"}, (403, 404, *KUBE), (NAME,)),
        )
    ),
    "admin": (
        Op("get", "/api/v1/admin/apikeys", "listApiKeys", "API keys, never the keys themselves "
           "(admin)", {200: "ApiKeyList"}, (403,), (_query("user", "Only this user's."),)),
        Op("post", "/api/v1/admin/apikeys", "createApiKey", "Create an API key; it is shown "
           "this once (admin)", {201: "NewApiKey"}, (403,), body="ApiKeyCreate"),
        Op("delete", "/api/v1/admin/apikeys/{id}", "revokeApiKey", "Revoke an API key (admin)",
           {204: None}, (403, 404), (NUMBER,)),
    ),
    "streams": (
        Op("get", "/api/v1/ws/sessions", "sessionStream", "WebSocket: sessions_update "
           "messages (the caller's sessions; all for operators) at once, within 1 s of a "
           "change and every 3 s; hibernate_warning before an idle session hibernates",
           {101: None}, (403, 426, 503), STREAM_AUTH),
        Op("get", "/api/v1/ws/cluster", "clusterStream", "WebSocket: metrics_update every 5 s "
           "(operator)", {101: None}, (403, 426, *KUBE), STREAM_AUTH),
        Op("get", "/api/v1/ws/logs/{namespace}/{pod}", "podLogStream", "WebSocket: follow a "
           "container's log, one '<RFC 3339 time> <line>' text message per line; closed "
           "normally when the pod is deleted (operators, or the owner of the session's pod)",
           {101: None}, (403, 404, 409, 422, 426, *KUBE),
           (_named_path("namespace", "The pod's namespace."), _named_path("pod", "The pod."),
            _query("container", "Default: the pod's first container."),
            _query("tailLines", "Lines of history first.",
                   _int(minimum=0, maximum=100_000, default=100)),
            *STREAM_AUTH)),
    ),
    "webhooks": (
        Op("post", "/webhooks/repository/sync", "repositoryWebhook", "A signed Git push: sync "
           "the repositories it concerns (200: not a branch push, or a repeated delivery)",
           {200: "WebhookResult", 202: "WebhookResult"}, (400, 401, 413, *KUBE), SIGNATURES,
           body="WebhookPush", public=True),
    ),
}  # fmt: skip


def document(app: web.Application) -> dict[str, Any]:
    """The document; the same for every app (a test checks it against the app's routes)."""
    del app
    paths: dict[str, dict[str, Schema]] = {}
    for tag, operations in OPERATIONS.items():
        for op in operations:
            paths.setdefault(op.path, {})[op.method] = op.render(tag)
    doc = {
        "openapi": "3.0.3",
        "info": {
            "title": "StreamSpace API",
            "version": __version__,
            "description": (
                "Sessions of containerised applications on Kubernetes. Every route but the "
                "public ones needs Authorization: Bearer with a JWT or an API key (sk_...). "
                "Users see only their own sessions (others' answer 404); template, repository "
                "and key management need the operator or admin role."
            ),
        },
        "tags": [{"name": tag} for tag in OPERATIONS],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A JWT (HS256, or RS256 from the OIDC issuer) or an API key.",
                }
            },
            "schemas": _schemas(),
            "responses": {
                name: {
                    "description": description,
                    "content": {"application/json": {"schema": _ref("Error")}},
                }
                for name, description in ERRORS.values()
            },
        },
    }
    return copy.deepcopy(doc)  # the schemas above are shared module constants


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document(request.app))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/openapi.json", openapi)
