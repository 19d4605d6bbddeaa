"""The CRDs against a real kube-apiserver: what is accepted, defaulted, rejected and displayed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from streamspace_facade.plugin_writes import RESERVED

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "stream.space", "v1alpha1"
KINDS = {
    "Session": "sessions",
    "Template": "templates",
    "Connection": "connections",
    "TemplateRepository": "templaterepositories",
    "Plugin": "plugins",
    "SessionQuota": "sessionquotas",
}


def body(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def create(api: client.ApiClient, ns: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    result: dict[str, Any] = client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, KINDS[obj["kind"]], obj, **kw
    )
    return result


def rejection(
    api: client.ApiClient, ns: str, obj: dict[str, Any], code: int = 422, **kw: Any
) -> dict[str, Any]:
    """Create ``obj``, expect it refused with ``code``, return the Status body."""
    with pytest.raises(ApiException) as caught:
        create(api, ns, obj, **kw)
    assert caught.value.status == code, caught.value.body
    status: dict[str, Any] = json.loads(caught.value.body)
    return status


def fields(status: dict[str, Any]) -> set[str]:
    return {cause.get("field", "") for cause in status.get("details", {}).get("causes", [])}


SESSION = {"user": "alice", "template": "firefox-browser"}
TEMPLATE = {"displayName": "Firefox", "baseImage": "lscr.io/linuxserver/firefox:latest"}
REPOSITORY = {"url": "https://github.com/example/templates.git"}
PLUGIN = {"catalogPlugin": {"repository": "official-plugins", "name": "audit-hook"}}


def test_session_defaults_are_applied_by_the_server(api: client.ApiClient, namespace: str) -> None:
    created = create(api, namespace, body("Session", "s1", dict(SESSION)))
    assert created["spec"] == {
        "user": "alice",
        "template": "firefox-browser",
        "state": "running",
        "persistentHome": True,
        "idleTimeout": "30m",
        "maxSessionDuration": "8h",
    }


def test_public_repository_template_format_is_accepted(
    api: client.ApiClient, namespace: str
) -> None:
    doc = yaml.safe_load((REPO / "examples" / "template-firefox.yaml").read_text())
    doc["metadata"].pop("namespace")
    del doc["spec"]["kasmvnc"]["port"]
    created = create(api, namespace, doc)
    spec = created["spec"]
    assert spec["kasmvnc"] == {"enabled": True, "port": 3000}  # port defaulted
    assert spec["defaultResources"] == {"memory": "2Gi", "cpu": "1000m"}
    assert spec["ports"] == [{"name": "kasmvnc", "containerPort": 3000, "protocol": "TCP"}]


def test_structured_template_is_accepted(api: client.ApiClient, namespace: str) -> None:
    spec = {
        **TEMPLATE,
        "appType": "webapp",
        "defaultResources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 2}},
        "ports": [{"name": "http", "containerPort": 8080}],
        "webapp": {"enabled": True, "port": 8080, "healthCheck": "/healthz"},
    }
    created = create(api, namespace, body("Template", "code-server", spec))
    assert created["spec"]["webapp"]["path"] == "/"
    assert created["spec"]["ports"][0]["protocol"] == "TCP"
    assert created["spec"]["defaultResources"]["limits"] == {"cpu": 2}


def test_connection_and_repository_defaults(api: client.ApiClient, namespace: str) -> None:
    conn = create(
        api,
        namespace,
        body("Connection", "c1", {"session": "s1", "user": "alice", "clientIP": "2001:db8::1"}),
    )
    assert conn["spec"]["clientIP"] == "2001:db8::1"
    repo = create(
        api,
        namespace,
        body(
            "TemplateRepository",
            "r1",
            {**REPOSITORY, "auth": {"type": "token", "secretRef": {"name": "git"}}},
        ),
    )
    assert repo["spec"] == {
        **REPOSITORY,
        "branch": "main",
        "type": "template",
        "autoInstall": False,
        "suspend": False,
        "auth": {"type": "token", "secretRef": {"name": "git"}},
    }
    for url in ("ssh://git@example.com/t.git", "git@example.com:org/t.git", "file:///srv/t"):
        create(api, namespace, body("TemplateRepository", f"r{len(url)}", {"url": url}))


INVALID = [
    pytest.param("Session", {**SESSION, "state": "sleeping"}, "spec.state", id="unknown-state"),
    pytest.param(
        "Session", {**SESSION, "idleTimeout": "30 minutes"}, "spec.idleTimeout", id="bad-idle"
    ),
    pytest.param("Session", {**SESSION, "idleTimeout": "0s"}, "spec.idleTimeout", id="zero-idle"),
    pytest.param(
        "Session", {**SESSION, "maxSessionDuration": "1d"}, "spec.maxSessionDuration", id="bad-max"
    ),
    pytest.param("Session", {**SESSION, "user": "Alice"}, "spec.user", id="upper-case-user"),
    pytest.param("Session", {"user": "alice"}, "spec.template", id="missing-template"),
    pytest.param(
        "Session", {**SESSION, "template": "Fire_fox"}, "spec.template", id="bad-template-name"
    ),
    pytest.param(
        "Session",
        {**SESSION, "resources": {"limits": {"memory": "lots"}}},
        "spec.resources.limits.memory",
        id="bad-quantity",
    ),
    pytest.param("Session", {**SESSION, "tags": ["a", "a"]}, "spec.tags[1]", id="duplicate-tag"),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": "bob", "access": "view"}] * 2},
        "spec.sharedWith[1]",
        id="duplicate-share",
    ),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": "bob", "access": "admin"}]},
        "spec.sharedWith[0].access",
        id="unknown-share-access",
    ),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": "Bob", "access": "view"}]},
        "spec.sharedWith[0].user",
        id="share-user-not-a-label",
    ),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": "bob"}]},
        "spec.sharedWith[0].access",
        id="share-without-access",
    ),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": "alice", "access": "control"}]},
        "spec.sharedWith",
        id="shared-with-the-owner",
    ),
    pytest.param(
        "Session",
        {**SESSION, "sharedWith": [{"user": f"u{i}", "access": "view"} for i in range(33)]},
        "spec.sharedWith",
        id="too-many-shares",
    ),
    pytest.param("Template", {"displayName": "No image"}, "spec.baseImage", id="missing-image"),
    pytest.param(
        "Template",
        {**TEMPLATE, "vnc": {"enabled": True}, "kasmvnc": {"enabled": True}},
        "spec",
        id="vnc-and-kasmvnc",
    ),
    pytest.param(
        "Template",
        {**TEMPLATE, "defaultResources": {"memory": "1Gi", "requests": {"cpu": "1"}}},
        "spec.defaultResources",
        id="flat-and-structured",
    ),
    pytest.param("Template", {**TEMPLATE, "appType": "game"}, "spec.appType", id="bad-app-type"),
    pytest.param(
        "Template",
        {**TEMPLATE, "ports": [{"containerPort": 70000}]},
        "spec.ports[0].containerPort",
        id="bad-port",
    ),
    pytest.param(
        "Template",
        {**TEMPLATE, "volumeMounts": [{"name": "user-home", "mountPath": "config"}]},
        "spec.volumeMounts[0].mountPath",
        id="relative-mount",
    ),
    pytest.param(
        "TemplateRepository",
        {**REPOSITORY, "auth": {"type": "oauth", "secretRef": {"name": "x"}}},
        "spec.auth.type",
        id="unknown-auth",
    ),
    pytest.param(
        "TemplateRepository",
        {**REPOSITORY, "auth": {"type": "basic"}},
        "spec.auth",
        id="auth-without-secret",
    ),
    pytest.param(
        "TemplateRepository", {"url": "http://example.com/t.git"}, "spec.url", id="plain-http"
    ),
    pytest.param("TemplateRepository", {"url": "ext::sh -c id"}, "spec.url", id="ext-transport"),
    pytest.param(
        "TemplateRepository", {**REPOSITORY, "type": "theme"}, "spec.type", id="unknown-type"
    ),
    pytest.param(
        "TemplateRepository", {**REPOSITORY, "syncInterval": "10s"}, "spec.syncInterval", id="short"
    ),
    pytest.param(
        "TemplateRepository", {**REPOSITORY, "branch": "a..b"}, "spec.branch", id="bad-branch"
    ),
    pytest.param(
        "Connection", {"session": "s1", "clientIP": "not-an-ip"}, "spec.clientIP", id="bad-ip"
    ),
    pytest.param("Connection", {"user": "alice"}, "spec.session", id="missing-session"),
    pytest.param(
        "Plugin",
        {"catalogPlugin": {"repository": "official-plugins", "name": "Audit_Hook"}},
        "spec.catalogPlugin.name",
        id="plugin-bad-name",
    ),
    pytest.param(
        "Plugin",
        {"catalogPlugin": {"repository": "Official", "name": "audit-hook"}},
        "spec.catalogPlugin.repository",
        id="plugin-bad-repository",
    ),
    pytest.param(
        "Plugin",
        {"catalogPlugin": {"name": "audit-hook"}},
        "spec.catalogPlugin.repository",
        id="plugin-missing-repository",
    ),
    pytest.param(
        "Plugin",
        {**PLUGIN, "approvedPermissions": ["sessions.read", "sessions.read"]},
        "spec.approvedPermissions[1]",
        id="plugin-duplicate-approval",
    ),
]


@pytest.mark.parametrize(("kind", "spec", "field"), INVALID)
def test_invalid_objects_are_rejected_with_the_field_path(
    api: client.ApiClient, namespace: str, kind: str, spec: dict[str, Any], field: str
) -> None:
    status = rejection(api, namespace, body(kind, "bad", copy.deepcopy(spec)))
    assert field in fields(status), status["message"]
    assert field in status["message"]


def test_unknown_fields_are_rejected_under_strict_validation(
    api: client.ApiClient, namespace: str
) -> None:
    status = rejection(
        api,
        namespace,
        body("Session", "s-strict", {**SESSION, "colour": "blue"}),
        code=400,
        field_validation="Strict",
    )
    assert 'unknown field "spec.colour"' in status["message"]


def test_user_is_immutable(api: client.ApiClient, namespace: str) -> None:
    objects = client.CustomObjectsApi(api)
    create(api, namespace, body("Session", "s-immutable", dict(SESSION)))
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "sessions", "s-immutable", {"spec": {"user": "mallory"}}
        )
    status = json.loads(caught.value.body)
    assert caught.value.status == 422
    assert "spec.user" in fields(status)
    assert "user is immutable" in status["message"]
    # Other fields stay editable.
    patched = objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions", "s-immutable", {"spec": {"state": "hibernated"}}
    )
    assert patched["spec"]["state"] == "hibernated"
    # a hibernated session may change hands (the admission policy says who may: admins), but
    # not while waking in the same write
    with pytest.raises(ApiException) as waking:
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "sessions", "s-immutable",
            {"spec": {"user": "mallory", "state": "running"}},
        )  # fmt: skip
    assert waking.value.status == 422 and "spec.user" in fields(json.loads(waking.value.body))
    moved = objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions", "s-immutable", {"spec": {"user": "mallory"}}
    )
    assert moved["spec"]["user"] == "mallory"


def test_connection_spec_is_immutable(api: client.ApiClient, namespace: str) -> None:
    create(api, namespace, body("Connection", "c-immutable", {"session": "s1", "user": "alice"}))
    with pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(api).patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "connections", "c-immutable", {"spec": {"session": "s2"}}
        )
    assert caught.value.status == 422
    assert "spec is immutable" in json.loads(caught.value.body)["message"]


def test_status_is_a_subresource_with_its_own_validation(
    api: client.ApiClient, namespace: str
) -> None:
    objects = client.CustomObjectsApi(api)
    create(api, namespace, body("Session", "s-status", dict(SESSION)))
    # Status sent with the main resource is ignored...
    patched = objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "sessions", "s-status", {"status": {"phase": "Running"}}
    )
    assert "status" not in patched
    # ...and goes through the status subresource, validated there.
    patched = objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "sessions",
        "s-status",
        {"status": {"phase": "Running", "activeConnections": 2}},
    )
    assert patched["status"] == {"phase": "Running", "activeConnections": 2}
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "sessions", "s-status", {"status": {"phase": "Sleeping"}}
        )
    assert caught.value.status == 422
    assert "status.phase" in caught.value.body


def table(api: client.ApiClient, namespace: str, plural: str) -> dict[str, Any]:
    """The server-side table `kubectl get` prints, columns and rows."""
    method, url, headers, body_, _ = api.param_serialize(
        "GET",
        f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"},
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=body_)
    response.read()
    result: dict[str, Any] = json.loads(response.data)
    return result


def test_printer_columns(api: client.ApiClient, namespace: str) -> None:
    create(api, namespace, body("Session", "s-table", dict(SESSION)))
    expected = {
        "sessions": ["Name", "User", "Template", "State", "Phase", "Connections", "URL", "Age"],
        "templates": ["Name", "Display Name", "Category", "App Type", "Image", "Valid", "Age"],
        "connections": ["Name", "User", "Session", "Client IP", "State", "Last Heartbeat", "Age"],
        "templaterepositories": ["Name", "URL", "Branch", "Phase", "Templates", "Last Sync", "Age"],
        "plugins": ["Name", "Plugin", "Version", "Type", "Enabled", "Phase", "Age"],
    }
    for plural, columns in expected.items():
        defined = table(api, namespace, plural)["columnDefinitions"]
        # what `kubectl get` prints; `-o wide` adds the columns of a higher priority
        assert [c["name"] for c in defined if not c.get("priority")] == columns
    wide = [c["name"] for c in table(api, namespace, "sessions")["columnDefinitions"]]
    assert wide[-3:] == ["Next Start", "Next Stop", "Age"]
    cells = table(api, namespace, "sessions")["rows"][0]["cells"]
    assert cells[:4] == ["s-table", "alice", "firefox-browser", "running"]


def test_discovery_names_short_names_and_category(api: client.ApiClient) -> None:
    resources = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in resources if "/" not in r.name}
    assert {name: by_name[name].short_names for name in by_name} == {
        "sessions": ["ss"],
        "templates": ["tpl"],
        "connections": ["conn"],
        "templaterepositories": ["repo"],
        "plugins": ["plg"],
        "sessionquotas": ["sq"],
    }
    assert all(r.categories == ["streamspace"] for r in by_name.values())
    assert all(r.namespaced for r in by_name.values())
    assert {r.name for r in resources if r.name.endswith("/status")} == {
        f"{plural}/status" for plural in KINDS.values()
    }


def test_plugin_defaults_config_and_identity(api: client.ApiClient, namespace: str) -> None:
    """enabled defaults to true, config keeps any shape, the catalog entry cannot be swapped
    under an installed Plugin (its Secret and approvals belong to that entry) and the name
    leaves room for the plugin- prefix of its children."""
    objects = client.CustomObjectsApi(api)
    config = {"url": "https://hooks.example.com/x", "nested": {"a": [1, 2]}}
    plugin = create(api, namespace, body("Plugin", "p1", {**PLUGIN, "config": config}))
    assert plugin["spec"]["enabled"] is True
    assert plugin["spec"]["config"] == config
    with pytest.raises(ApiException) as caught:
        objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "plugins", "p1", {"spec": {"catalogPlugin": {"name": "x"}}}
        )
    assert caught.value.status == 422
    assert "spec.catalogPlugin" in fields(json.loads(caught.value.body))
    # The version may change (an upgrade).
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "plugins", "p1", {"spec": {"catalogPlugin": {"version": "2"}}}
    )
    status = rejection(api, namespace, body("Plugin", "p" * 57, dict(PLUGIN)))
    assert "metadata.name" in status["message"]
    # the words of the plugin routes are no Plugin names: one applied with kubectl would be
    # listed over REST and never reachable by its id
    for word in sorted(RESERVED):
        status = rejection(api, namespace, body("Plugin", word, dict(PLUGIN)))
        assert "words of the plugin API's paths" in status["message"], status
