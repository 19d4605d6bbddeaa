"""The OpenAPI 3.0 document at ``/api/v1/openapi.json``: every route of the facade, by hand.

It is written as data beside the handlers rather than derived from them, because it is a
contract: ``tests/e2e/test_openapi.py`` checks that it names exactly the app's routes, and runs
Schemathesis against a live facade to check that every answer matches it. A handler that
changes what it accepts or returns changes this document in the same commit.

The component schemas (and the conventions they follow) are in ``openapi_schemas``.
"""

from __future__ import annotations

import copy
from typing import Any

from aiohttp import web

from streamspace import __version__
from streamspace_facade.openapi_ops import ERRORS, KUBE, Op, paged
from streamspace_facade.openapi_ops import header_param as _header
from streamspace_facade.openapi_ops import named_path_param as _named_path
from streamspace_facade.openapi_ops import path_param as _path
from streamspace_facade.openapi_ops import query_param as _query
from streamspace_facade.openapi_plugins import PLUGIN_OPERATIONS, plugin_schemas
from streamspace_facade.openapi_schemas import (
    APP_TYPE,
    DELIVERY_STATUS,
    STATE,
    Schema,
    integer,
    ref,
    schemas,
    string,
)
from streamspace_facade.openapi_sharing import SESSION_FIELDS, SHARING_OPERATIONS, sharing_schemas
from streamspace_facade.openapi_tenancy import USAGE_OPERATIONS, USER_OPERATIONS, tenancy_schemas
from streamspace_facade.podlogs import BACKLOG
from streamspace_facade.responses import json_response

SESSION = _path("The Session's id (its name).")
CONNECTION = _query("connectionId", "From the connect answer.", string(minLength=1), required=True)
IN_NAMESPACE = _query(
    "namespace",
    "Only with ALL_NAMESPACES: the session's namespace, needed when its id is in several "
    "(409 otherwise); ignored when the facade serves one namespace.",
)
NAME = _path("The object's name.")
NUMBER = _path("The numeric id.", integer(minimum=1, format="int64"))
CATEGORY = _query("category", "Only of this category.")
TAG = _query("tag", "Only with this tag.")
SIGNATURES = (
    _header("X-Hub-Signature-256", "GitHub: sha256=<hex HMAC-SHA256 of the body>."),
    _header("X-GitHub-Event", "GitHub: push (other events are ignored)."),
    _header("X-GitHub-Delivery", "GitHub: the delivery id (required); acted on once."),
    _header("X-Gitlab-Token", "GitLab: the shared secret."),
    _header("X-Gitlab-Event", "GitLab: Push Hook."),
    _header("X-Gitlab-Event-UUID", "GitLab: the delivery id (required); acted on once."),
    _header("webhook-id", "Generic (Standard Webhooks): the delivery id; acted on once."),
    _header("webhook-timestamp", "Generic: Unix seconds; refused beyond WEBHOOK_TOLERANCE."),
    _header(
        "webhook-signature",
        "Generic: v1,<base64 HMAC-SHA256 of '<webhook-id>.<webhook-timestamp>.<body>'>.",
    ),
)
IDEMPOTENCY_KEY = _header(
    "Idempotency-Key",
    "Optional, 1-255 printable ASCII characters: a retry with the same key gets the first "
    "answer (and never a second session); the same key with a different body is a 422, and "
    "while the first request is still being served a 409.",
)
CSRF = _header(
    "X-Requested-With",
    "Must be 'streamspace': a request signed in by cookie that changes something sends it, "
    "which a cross-site form cannot.",
)
S = "/api/v1/sessions/{id}"
P = "/api/v1/plugins/{id}"
PLUGIN = _path("The Plugin's name.")
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
        Op("get", "/ready", "ready", "Readiness: 200 when this replica can serve (Kubernetes "
           "client connected, PostgreSQL answering if configured, not shutting down); 503 "
           "names what is not ready in details.checks", {200: "Ready"}, (503,), public=True),
        Op("get", "/version", "version", "Version", {200: "Version"}, public=True),
        Op("get", "/api/v1/openapi.json", "openapi", "This document", {200: None}, public=True),
        Op("get", "/metrics", "metrics", "Prometheus metrics (text exposition format)",
           {200: None}, public=True),
        Op("get", "/api/v1/me", "me", "Who the caller is", {200: "Me"}),
    ),
    "sign-in": (
        Op("post", "/api/v1/auth/session", "signIn", "A browser signs in: the credential "
           "(API key or token) is checked and comes back as the HttpOnly, SameSite=Strict "
           "cookie streamspace_session, which then authenticates its requests and WebSockets "
           "(writes must send X-Requested-With: streamspace). 401: the credential is refused",
           {200: "Me"}, (401, 403, 503), (CSRF,), body="SignIn", public=True),
        Op("delete", "/api/v1/auth/session", "signOut", "The browser signs out: the cookie is "
           "cleared (the credential itself stays valid)", {204: None}, public=True),
        Op("get", "/api/v1/auth/methods", "signInMethods", "How a browser may sign in: with a "
           "credential, and at the OIDC issuer when one is configured", {200: "SignInMethods"},
           public=True),
        Op("get", "/api/v1/auth/oidc/login", "oidcSignIn", "Start signing in at the OIDC "
           "issuer (authorization code with PKCE; the facade is the client): 302 to the "
           "issuer, with the state in the HttpOnly cookie streamspace_oidc. 404: no issuer "
           "configured", {302: None}, (404, 503), public=True),
        Op("get", "/api/v1/auth/oidc/callback", "oidcCallback", "Where the issuer sends the "
           "browser back: the code is exchanged, the ID token checked (signature, issuer, "
           "audience, nonce) and set as the session cookie; 302 to /. 400: no sign-in was "
           "started in this browser or the state differs; 401: refused",
           {302: None}, (400, 401, 404, 422, 503),
           (_query("code", "The authorization code."), _query("state", "The sign-in's state."),
            _query("error", "The issuer's refusal."),
            {"name": "streamspace_oidc", "in": "cookie", "description": "The sign-in's state, "
             "from /api/v1/auth/oidc/login.", "schema": string()}),
           public=True),
    ),
    "console": (
        Op("get", "/", "console", "The web console's page (HTML, no-cache, with a strict "
           "Content-Security-Policy); 503 when it was not built (make console)", {200: None},
           (503,), public=True),
        Op("get", "/assets/{name}", "consoleAsset", "One of the web console's content-hashed "
           "files (cached as immutable)", {200: None}, (404,),
           (_named_path("name", "The file's name, as the console's page refers to it."),),
           public=True),
    ),
    "sessions": (
        Op("get", "/api/v1/sessions", "listSessions", "Sessions the caller may see (users: "
           "their own and those shared with them), newest first", {200: "SessionList"}, (422,),
           (_query("user", "Only this owner's."), _query("state", "Only in this state.", STATE),
            _query("template", "Only of this Template."), TAG, *paged(numbered=True))),
        Op("post", "/api/v1/sessions", "createSession", "Create a session (owner: the caller; "
           "admins may name another user; 403 QUOTA_EXCEEDED over the owner's SessionQuota)",
           {201: "Session"}, (403, 409, 429, *KUBE),
           (IDEMPOTENCY_KEY,), body="SessionCreate"),
        Op("get", S, "getSession", "One session", {200: "Session"}, (404, 409, *KUBE),
           (SESSION, IN_NAMESPACE)),
        Op("patch", S, "updateSession", "Change state, resources, timeouts, tags or schedule (a "
           "wake, state running, answers 403 QUOTA_EXCEEDED over the owner's SessionQuota)",
           {200: "Session"}, (403, 404, 409, *KUBE), (SESSION, IN_NAMESPACE),
           body="SessionPatch"),
        Op("delete", S, "deleteSession", "Delete a session and its workload", {204: None},
           (404, 409, *KUBE), (SESSION, IN_NAMESPACE)),
    ),
    "connections": (
        Op("get", S + "/connect", "connectSession", "Open a connection (wakes a hibernated "
           "session; 403 QUOTA_EXCEEDED instead when its owner's SessionQuota does not admit "
           "it running)", {200: "ConnectResult"}, (403, 404, 409, 422, 429, *KUBE),
           (SESSION, IN_NAMESPACE)),
        Op("delete", S + "/disconnect", "disconnectSession", "Close a connection",
           {200: "DisconnectResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("post", S + "/disconnect", "disconnectSessionPost", "Close a connection (alias)",
           {200: "DisconnectResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("post", S + "/heartbeat", "heartbeat", "Keep a connection alive (every 30 s)",
           {200: "HeartbeatResult"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, CONNECTION)),
        Op("get", S + "/connections", "listConnections", "A session's open connections",
           {200: "ConnectionList"}, (404, 409, 422, *KUBE), (SESSION, IN_NAMESPACE, *paged())),
    ),
    "templates": (
        Op("get", "/api/v1/templates", "listTemplates", "Installed templates",
           {200: "TemplateList"}, (422, *KUBE), (CATEGORY, *paged())),
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
            *paged(20, 100, numbered=True))),
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
               {200: "RepositoryList"}, (422,), paged()),
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
           "(admin)", {200: "ApiKeyList"}, (403, 422), (_query("user", "Only this user's."),
                                                       *paged())),
        Op("post", "/api/v1/admin/apikeys", "createApiKey", "Create an API key; it is shown "
           "this once (admin)", {201: "NewApiKey"}, (403,), body="ApiKeyCreate"),
        Op("delete", "/api/v1/admin/apikeys/{id}", "revokeApiKey", "Revoke an API key (admin)",
           {204: None}, (403, 404), (NUMBER,)),
        Op("get", "/api/v1/admin/audit", "listAudit", "The audit log, newest first (admin)",
           {200: "AuditList"}, (403, 422), (_query("user", "Only this user's changes."),
                                            _query("action", "Only this action (create, ...)."),
                                            *paged(50, 500))),
    ),
    "streams": (
        Op("get", "/api/v1/ws/sessions", "sessionStream", "WebSocket: sessions_update "
           "messages (the caller's sessions; all for operators) at once, within 1 s of a "
           "change and every 3 s; hibernate_warning before an idle session hibernates. With "
           "format=delta: one sessions_update with a seq, then sessions_delta messages "
           "{seq, upserted: [session], removed: [{id, namespace}], count} numbered seq+1, "
           "seq+2, ... and no periodic snapshots; on a gap the client sends the text message "
           '{"type": "resync"} (or reconnects) and gets a fresh sessions_update with its seq',
           {101: None}, (403, 422, 426, 429, 503),
           (_query("format", "full (default: the seed's sessions_update snapshots) or delta.",
                   string(enum=["full", "delta"], default="full")),
            *STREAM_AUTH)),
        Op("get", "/api/v1/ws/cluster", "clusterStream", "WebSocket: metrics_update every 5 s "
           "(operator)", {101: None}, (403, 426, 429, *KUBE), STREAM_AUTH),
        Op("get", "/api/v1/ws/logs/{namespace}/{pod}", "podLogStream", "WebSocket: follow a "
           "session container's log, one '<RFC 3339 time> <line>' text message per line; "
           "closed normally when the pod is deleted (operators, or the owner of the session; "
           "other pods are 404 for everyone)",
           {101: None}, (403, 404, 409, 422, 426, 429, *KUBE),
           (_named_path("namespace", "The pod's namespace."), _named_path("pod", "The pod."),
            _query("container", "Default: the pod's first container."),
            _query("tailLines", "Lines of history first.",
                   integer(minimum=0, maximum=BACKLOG, default=100)),
            *STREAM_AUTH)),
        Op("get", "/api/v1/ws/exec/{namespace}/{pod}", "terminalStream", "WebSocket: a shell "
           "in a session container through pods/exec (the session's owner, operators, admins; "
           "pods whose owner chain does not lead to a Session are 404 for everyone). Client "
           'text messages: {"type": "stdin", "data": "<text>"}, {"type": "resize", "cols": n, '
           '"rows": n}; server: {"type": "stdout"|"stderr", "data": "<text>"}, then once '
           '{"type": "exit", "code": n} (null with "error" when the pod said no code) and a '
           "normal close. Closes: 1003 a message not understood, 1009 one over 64 KiB, 4408 "
           "no input for TERMINAL_IDLE_TIMEOUT, 4401 credentials no longer valid",
           {101: None}, (403, 404, 409, 422, 426, 429, *KUBE),
           (_named_path("namespace", "The pod's namespace."), _named_path("pod", "The pod."),
            _query("container", "Default: the pod's first container."),
            _query("command", "The program to run, one of TERMINAL_SHELLS (default its "
                   "first, /bin/sh); a path, no arguments."),
            _query("tty", "true (default): one output stream, a pty that resize messages "
                   "size; false: stdout and stderr apart.",
                   string(enum=["true", "false"], default="true")),
            *STREAM_AUTH)),
    ),
    "gate": (
        Op("get", "/auth/session", "checkSessionAccess", "Forward auth for the ingress "
           "controller: may the request in X-Original-URL (ingress-nginx) or X-Forwarded-Host/"
           "-Uri (Traefik) reach its session? The credential is the streamspace_access cookie "
           "or query parameter (a query one comes back as a cookie). 401: none, or invalid or "
           "expired; 403: valid, but for another session or not the owner's",
           {200: "GateResult"}, (401, 403),
           (_header("X-Original-URL", "The original request's URL (ingress-nginx)."),
            _header("X-Forwarded-Host", "The original request's host (Traefik)."),
            _header("X-Forwarded-Uri", "The original request's path and query (Traefik)."),
            _header("X-Forwarded-Proto", "The original request's scheme (Traefik)."),
            {"name": "streamspace_access", "in": "cookie", "description": "The credential "
             "from /connect.", "schema": string()}),
           public=True),
    ),
    "plugin-deliveries": (
        Op("get", P + "/deliveries", "listPluginDeliveries", "A plugin's event deliveries "
           "(operator), newest first: status, attempts, last error and HTTP status, latency",
           {200: "PluginDeliveryList"}, (403, 404, 422),
           (PLUGIN, _query("status", "Only in this status.", DELIVERY_STATUS),
            *paged(50, 200, numbered=True))),
        Op("post", P + "/deliveries/{deliveryId}/redeliver", "redeliverPluginDelivery",
           "Send a dead delivery again with a fresh retry budget (admin); 409 unless it is dead",
           {202: "PluginDelivery"}, (403, 404, 409),
           (PLUGIN, _named_path("deliveryId", "The delivery's id (its webhook-id)."))),
    ),
    "plugins": PLUGIN_OPERATIONS,
    "sharing": SHARING_OPERATIONS,
    "users": USER_OPERATIONS,
    "analytics": USAGE_OPERATIONS,
    "webhooks": (
        Op("post", "/webhooks/repository/sync", "repositoryWebhook", "A signed Git push: sync "
           "the repositories it concerns (200: not a branch push, or a repeated delivery)",
           {200: "WebhookResult", 202: "WebhookResult"}, (400, 401, 413, *KUBE), SIGNATURES,
           body="WebhookPush", public=True),
    ),
}  # fmt: skip


def _schemas() -> dict[str, Schema]:
    found = {**schemas(), **plugin_schemas(), **sharing_schemas(), **tenancy_schemas()}
    session = found["Session"]
    session["properties"].update(SESSION_FIELDS)
    session["required"].extend(SESSION_FIELDS)
    return found


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
                "and key management need the operator or admin role. POSTs accept an "
                "Idempotency-Key header: the same key from the same caller gets the same answer."
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
                    "content": {"application/json": {"schema": ref("Error")}},
                }
                for name, description in ERRORS.values()
            },
        },
    }
    return copy.deepcopy(doc)  # the schemas above are shared module constants


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(request.app))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/api/v1/openapi.json", openapi)
