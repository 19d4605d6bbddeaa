"""The component schemas of the OpenAPI document (``openapi.py`` holds the operations).

Conventions: bodies are camelCase JSON; handlers reject unknown request fields (422), hence
``additionalProperties: false``; response fields a handler always writes are ``required``, and
those that may be null are ``nullable``; every failure is an ``Error``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamspace.naming import DNS_LABEL, DNS_SUBDOMAIN
from streamspace_facade.openapi_schedule import SCHEDULE_REQUEST, SCHEDULE_RESPONSE
from streamspace_facade.sessions import TAG_PATTERN
from streamspace_facade.state import DURATION

Schema = dict[str, Any]

QUANTITY = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# --- schema helpers -----------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def string(description: str = "", **keywords: Any) -> Schema:
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


def integer(description: str = "", **keywords: Any) -> Schema:
    return {"type": "integer", **({"description": description} if description else {}), **keywords}


def _bool(description: str) -> Schema:
    return {"type": "boolean", "description": description}


def _time(description: str, *, nullable: bool = False) -> Schema:
    schema = string(description, format="date-time")
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


def _list(key: str, item: str, *, numbered: bool = False) -> Schema:
    """A page of a list (``paging``): the items, how many match in all, the page size and the
    token of the next page; ``page`` where numbered pages are accepted and one was asked for."""
    properties: dict[str, Schema] = {
        key: _array(ref(item)),
        "total": integer("How many items match, on all pages.", minimum=0),
        "limit": integer("The page size used.", minimum=1),
        "continue": string(
            "Pass as ?continue= for the next page; null on the last page.", nullable=True
        ),
    }
    schema = _response(properties)
    if numbered:
        schema["properties"]["page"] = integer(
            "The page asked for with ?page= (1 when neither page nor continue was given).",
            minimum=1,
        )
    return schema


# --- component schemas --------------------------------------------------------------------------

OBJECT_NAME = string("A Kubernetes object name.", pattern=DNS_SUBDOMAIN.pattern, maxLength=253)
USER = string("A user name: a DNS label.", pattern=DNS_LABEL.pattern, maxLength=63)
DURATION_STRING = string("A duration like 90s, 30m or 8h.", pattern=DURATION.pattern, maxLength=16)
ROLE = _enum("A role.", "user", "operator", "admin")
DELIVERY_STATUS = _enum(
    "pending (not yet accepted; retried with backoff), delivered, or dead (its retry budget"
    " spent; an admin may redeliver it).",
    "pending",
    "delivered",
    "dead",
)
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
    string("A tag.", pattern=TAG_PATTERN, minLength=1, maxLength=63),
    "Labels for finding sessions.",
    maxItems=32,
    uniqueItems=True,
)
QUANTITY_VALUE: Schema = {
    "description": "A Kubernetes quantity such as 500m, 2 or 1Gi.",
    "anyOf": [string(pattern=QUANTITY, maxLength=64), {"type": "number", "minimum": 0}],
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
        part: {"type": "object", "additionalProperties": {"anyOf": [string(), {"type": "integer"}]}}
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
    "schedule": SCHEDULE_REQUEST,
}

PORT = integer("A port number.", minimum=1, maximum=65535)
VNC: Schema = {
    "type": "object",
    "properties": {
        "enabled": _bool("Streamed over VNC."),
        "port": PORT,
        "protocol": string(maxLength=64),
    },
}
TEMPLATE_SPEC: dict[str, Schema] = {
    "displayName": string("Name shown in catalogs.", maxLength=256),
    "baseImage": string("Container image.", minLength=1, maxLength=1024, pattern=r"^[^\s]+$"),
    "description": string(maxLength=4096),
    "category": string(maxLength=256),
    "icon": string("URL of an icon.", maxLength=2048),
    "tags": _array(string(maxLength=128), maxItems=64),
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
                "name": string(pattern=DNS_LABEL.pattern, maxLength=15),
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
                "name": string(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", maxLength=256),
                "value": string(maxLength=32768),
            },
        },
        maxItems=128,
    ),
    "volumeMounts": _array(
        {
            "type": "object",
            "required": ["name", "mountPath"],
            "properties": {
                "name": string(pattern=DNS_LABEL.pattern, maxLength=63),
                "mountPath": string(pattern="^/", maxLength=1024),
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
            "path": string(maxLength=1024),
            "healthCheck": string(maxLength=1024),
        },
    },
    "capabilities": _array(string(maxLength=64), maxItems=32),
}

ERROR_CODES = (
    "BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED, CONFLICT, TOO_LARGE, "
    "VALIDATION_FAILED, KUBERNETES_ERROR, UNAVAILABLE, LIMIT_EXCEEDED, QUOTA_EXCEEDED, "
    "RATE_LIMITED"
)


def schemas() -> dict[str, Schema]:
    return {
        "Error": _response(
            {
                "error": string("What went wrong, for people."),
                "code": string(f"A stable code: {ERROR_CODES}."),
                "details": {
                    "type": "object",
                    "description": "e.g. fields: path → problem; for QUOTA_EXCEEDED quota (the "
                    "SessionQuota's name), resource (sessions, runningSessions, cpu, memory, "
                    "gpus or storage), used (what the user would hold) and allowed",
                },
            },
            "Every failure.",
        ),
        "Session": _response(
            {
                "id": string("The Session's name: <user>-<template>-<8 hex>."),
                "name": string("Same as id."),
                "namespace": string(),
                "user": string("The owner."),
                "template": string("The Template's name."),
                "state": STATE,
                "phase": PHASE,
                "status": {**PHASE, "description": "Same as phase (older clients)."},
                "url": _nullable(string("Where the session is reached, once running.")),
                "podName": _nullable(string("The session's pod, once running.")),
                "activeConnections": integer("Connections now open.", minimum=0),
                "resources": RESOURCES_RESPONSE,
                "persistentHome": _bool("Whether the user's home volume is mounted."),
                "idleTimeout": _nullable(string("Hibernate after this long idle.")),
                "maxSessionDuration": _nullable(string("Terminate after this long.")),
                "tags": _array(string()),
                "lastActivity": _time("Last connect, heartbeat or disconnect.", nullable=True),
                "idleDeadline": _time("When it hibernates if nothing happens.", nullable=True),
                "startedAt": _time("When it last started running.", nullable=True),
                "hibernatedAt": _time("When it last hibernated.", nullable=True),
                "schedule": SCHEDULE_RESPONSE,
                "nextStart": _time("The next scheduled start.", nullable=True),
                "nextStop": _time("The next scheduled stop.", nullable=True),
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
                "id": string("The Connection's name."),
                "connectionId": string("Same as id."),
                "sessionId": string(),
                "user": string(),
                "clientIP": _nullable(string()),
                "userAgent": _nullable(string()),
                "state": CONNECTION_STATE,
                "connectedAt": _time("When the operator saw it.", nullable=True),
                "lastHeartbeat": _time("The last heartbeat.", nullable=True),
                "createdAt": _time("When it was created."),
            }
        ),
        "ConnectionList": _list("connections", "Connection"),
        "ConnectResult": _response(
            {
                "connectionId": string("Send it with heartbeats and the disconnect."),
                "sessionUrl": _nullable(string("Where the session is reached, once running.")),
                "state": STATE,
                "phase": PHASE,
                "ready": _bool("Running and reachable now (otherwise it is starting)."),
                "heartbeatInterval": integer(
                    "Seconds: send a heartbeat at least this often while the session is in use "
                    "(a third of STALE_AFTER; a connection without one for STALE_AFTER is stale)."
                ),
                "accessToken": _nullable(
                    string(
                        "For the owner and control shares: the credential the session's host "
                        "asks for (send it "
                        "as ?streamspace_access= once; it comes back as a cookie); null for "
                        "anyone else."
                    )
                ),
                "accessExpiresAt": _time("When accessToken expires.", nullable=True),
                "accessUrl": _nullable(
                    string("sessionUrl with the credential in its query, once running.")
                ),
            }
        ),
        "GateResult": _response(
            {
                "user": string("Who the credential admits (the owner or a control share)."),
                "session": string("The session it admits to."),
                "expiresAt": _time("When the credential expires."),
            }
        ),
        "DisconnectResult": _response(
            {"connectionId": string(), "disconnected": {"type": "boolean", "enum": [True]}}
        ),
        "HeartbeatResult": _response(
            {"connectionId": string(), "lastHeartbeat": _time("Now."), "state": CONNECTION_STATE}
        ),
        "Template": {
            "type": "object",
            "description": "The Template's spec fields, plus these.",
            "required": ["id", "name", "namespace", "appType", "valid", "message", "createdAt"],
            "properties": {
                **TEMPLATE_SPEC,
                "id": string("The Template's name."),
                "name": string("Same as id."),
                "namespace": string(),
                "appType": APP_TYPE,
                "valid": {
                    **_bool("Whether sessions can run it (null until checked)."),
                    "nullable": True,
                },
                "message": _nullable(string("Why it is invalid, or a summary.")),
                "createdAt": _time("When it was created."),
            },
        },
        "TemplateList": _list("templates", "Template"),
        "TemplateCreate": {
            "description": "{name, spec}, or flat: name beside the spec fields.",
            "anyOf": [
                _request(
                    {"name": OBJECT_NAME, "spec": ref("TemplateSpec")}, required=["name", "spec"]
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
                "id": integer("The catalog entry's id (install it with this).", format="int64"),
                "name": string("The Template name it installs as."),
                "displayName": string(),
                "description": string(),
                "category": string(),
                "appType": APP_TYPE,
                "icon": _nullable(string()),
                "baseImage": string(),
                "tags": _array(string()),
                "installCount": integer("How often it was installed.", minimum=0),
                "sourcePath": string("The file it came from in the repository."),
                "repository": _response({"id": string(), "url": string()}),
                "updatedAt": _time("When the sync last wrote it."),
            }
        ),
        "CatalogTemplateList": _list("templates", "CatalogTemplate", numbered=True),
        "Repository": _response(  # users see id, name and status; operators everything
            {
                "id": string("The TemplateRepository's name."),
                "name": string("Same as id."),
                "namespace": string(),
                "url": string(),
                "branch": string(),
                "type": _enum("What it holds.", "template", "plugin"),
                "authType": _enum("How it is fetched.", "none", "token", "basic", "ssh"),
                "authSecret": _nullable(
                    {
                        **OBJECT_NAME,
                        "description": "The credential Secret: authSecret as given, or the one "
                        "the API made (<name>-auth-<random suffix>, owned by the repository).",
                    }
                ),
                "syncInterval": _nullable(string("Sync every (default from SYNC_INTERVAL).")),
                "autoInstall": _bool("Templates are also installed as Template objects."),
                "suspend": _bool("Not synced while true."),
                "status": _enum("Sync status.", "pending", "syncing", "synced", "failed"),
                "message": _nullable(string("What the last sync found or why it failed.")),
                "lastSync": _time("When it last synced.", nullable=True),
                "lastSyncCommit": _nullable(string("The commit last synced.")),
                "templateCount": integer("Templates found.", minimum=0),
                "pluginCount": integer("Plugins found.", minimum=0),
                "createdAt": _time("When it was created."),
            },
            "A template repository. Callers with the user role see id, name and status only.",
        )
        | {"required": ["id", "name", "status"]},
        "RepositoryList": _list("repositories", "Repository"),
        "RepositoryCreate": _request(
            {
                "name": string("Default: from the URL.", pattern=DNS_LABEL.pattern, maxLength=58),
                "url": string(
                    "https:// or ssh:// (or user@host:path).", minLength=1, maxLength=2048
                ),
                "branch": string(
                    "Default main.", pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$", maxLength=255
                ),
                "type": _enum("Default template.", "template", "plugin"),
                "authType": _enum("Default none.", "none", "token", "basic", "ssh"),
                "authSecret": {**OBJECT_NAME, "description": "An existing Secret instead."},
                "token": string("authType token."),
                "username": string("authType basic."),
                "password": string("authType basic."),
                "sshPrivateKey": string("authType ssh."),
                "knownHosts": string("authType ssh."),
                "syncInterval": DURATION_STRING,
                "autoInstall": _bool("Also install every template as a Template."),
                "suspend": _bool("Do not sync."),
            },
            required=["url"],
            example={"url": "https://github.com/example/templates.git", "branch": "main"},
        ),
        "SyncResult": _response(
            {
                "repositories": _array(string(), "Repositories asked to sync."),
                "total": integer("How many.", minimum=0),
            }
        ),
        "WebhookResult": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": _enum("What was done.", "accepted", "ignored", "duplicate"),
                "reason": string("Why it was ignored."),
                "repositories": _array(string(), "Repositories asked to sync."),
                "total": integer("How many.", minimum=0),
                "deferred": _array(
                    string(),
                    "Of those, the ones whose sync runs later (SYNC_REQUEST_INTERVAL per "
                    "repository); it will fetch the newest commit.",
                ),
            },
        },
        "Me": _response(
            {
                "user": string(),
                "role": ROLE,
                "via": _enum("How.", "jwt", "apikey"),
                "groups": _array(string(), "The caller's groups (both sources)."),
                "email": string("From the user's row, when there is a database.", nullable=True),
                "name": string(nullable=True),
                "lastLogin": _time("Last browser sign-in.", nullable=True),
                "quota": {
                    "type": "object",
                    "nullable": True,
                    "description": "The SessionQuota that governs the caller in the facade's "
                    "namespace: {quota, namespace, limits, used} (limits and use by resource: "
                    "counts as numbers, quantities as text); null when none does.",
                },
            }
        ),
        "ApiKey": _response(
            {
                "id": integer("Revoke it with this.", format="int64"),
                "user": string(),
                "name": string(),
                "prefix": string("The key's first characters."),
                "role": ROLE,
                "createdAt": _time("When it was created."),
                "lastUsedAt": _time("Roughly when it was last used.", nullable=True),
                "revokedAt": _time("When it was revoked.", nullable=True),
            }
        ),
        "ApiKeyList": _list("apiKeys", "ApiKey"),
        "AuditEntry": _response(
            {
                "id": string("The row's id (ascending with time)."),
                "user": string("Who made the change.", nullable=True),
                "action": string("create, update, delete, sync, revoke, ..."),
                "resourceType": string(),
                "resourceId": string(nullable=True),
                "changes": {"type": "object", "description": "What changed (never a secret)."},
                "timestamp": _time("When the request was served."),
                "ipAddress": string(nullable=True),
            }
        ),
        "AuditList": _list("entries", "AuditEntry"),
        "WebhookPush": {
            "type": "object",
            "description": "A GitHub or GitLab push, or generic {repository_url, branch?, ref?}.",
            "example": {"repository_url": "https://github.com/example/templates.git"},
        },
        "SignInMethods": _response(
            {
                "token": {"type": "boolean", "description": "An API key or token may be pasted."},
                "oidc": {"type": "boolean", "description": "The OIDC issuer may be used."},
                "oidcLogin": string("Where to send the browser for it.", nullable=True),
            }
        ),
        "SignIn": _request(
            {"token": string("An API key (sk_...) or a JWT.", minLength=1, maxLength=8192)},
            required=["token"],
            example={"token": "sk_..."},
        ),
        "ApiKeyCreate": _request(
            {"user": USER, "role": ROLE, "name": string("What it is for.")},
            required=["user", "role"],
            example={"user": "alice", "role": "user", "name": "ci"},
        ),
        "NewApiKey": _response(
            {
                "key": string("The key: shown this once only.", pattern="^sk_"),
                "user": string(),
                "role": ROLE,
                "name": string(),
                "prefix": string(),
            }
        ),
        "Health": _response(
            {
                "status": _enum("Serving.", "ok"),
                "mirror": _enum("This replica's mirror role.", "writer", "standby", nullable=True),
                "mirrorReady": _bool("The mirror has caught up with the API server."),
            }
        ),
        "Ready": _response(
            {
                "status": _enum("Ready to serve.", "ready"),
                "checks": _response(
                    {
                        "kubernetes": string("ok once the Sessions were listed."),
                        "database": string("ok, or 'not configured' without DATABASE_URL."),
                    }
                ),
            }
        ),
        "Version": _response({"name": string(), "version": string(), "api": string()}),
        "PluginDelivery": _response(
            {
                "id": string("The delivery's id, sent as webhook-id (the same on every retry)."),
                "eventId": string("The CloudEvent's id."),
                "type": string("The event, e.g. session.created."),
                "subject": string("What it is about, e.g. sessions/<name>."),
                "status": DELIVERY_STATUS,
                "attempts": integer("Attempts made so far.", minimum=0),
                "nextAttemptAt": _time("When it goes next, while pending.", nullable=True),
                "lastError": _nullable(string("What went wrong on the last failed attempt.")),
                "lastStatus": _nullable(integer("The receiver's last HTTP status.")),
                "latencyMs": _nullable(
                    {"type": "number", "description": "From the change to its acceptance."}
                ),
                "deliveredAt": _time("When the receiver accepted it.", nullable=True),
                "createdAt": _time("When the event was recorded."),
            }
        ),
        "PluginDeliveryList": _list("deliveries", "PluginDelivery", numbered=True),
    }
