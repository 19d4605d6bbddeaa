"""The plugin routes against the real facade, operator, API server and PostgreSQL.

The catalog entry is written into ``catalog_plugins`` directly (as the operator's sync would),
under a suspended plugin repository made over the API, so no Git server is involved.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from psycopg.types.json import Jsonb

from facade_testing import Client
from plugin_testing import MANIFEST, add_catalog_plugin
from stack_testing import Stack
from streamspace.plugins.policy import SECRET_ANNOTATION
from streamspace.plugins.secret import plugin_secret
from streamspace.plugins.workload import CONFIG_KEY, SIGNING_KEY, PluginRef
from streamspace_dev.process import wait_until
from streamspace_facade.state import SERVICES
from streamspace_testing import GROUP, VERSION

pytestmark = pytest.mark.integration

TIMEOUT = 60
P = "/api/v1/plugins"
TOKEN = "tok-never-shown-8f2c91"


def install(operator: Client, catalog_id: int, name: str = "hook") -> Any:
    body = {
        "pluginId": catalog_id,
        "name": name,
        "config": {"url": "https://hooks.example.com/x", "channel": "#ops", "token": TOKEN},
    }
    return operator.post(P + "/install", body)


def plugin_object(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "plugins", name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return obj


def secret_data(api: client.ApiClient, namespace: str, name: str) -> tuple[Any, dict[str, str]]:
    secret = client.CoreV1Api(api).read_namespaced_secret(name, namespace)
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    return secret, data


def test_install_checks_config_and_never_shows_secrets(stack: Stack, api: client.ApiClient) -> None:
    catalog_id = add_catalog_plugin(stack)
    operator = stack.client("olga", "operator")

    # every failing field is named, and a secret value is never quoted
    bad = operator.post(
        P + "/install",
        {"pluginId": catalog_id, "config": {"channel": "x", "token": "q7-zz", "other": 1}},
    )
    assert bad.status == 422, bad
    assert set(bad.body["details"]["fields"]) == {
        "config.url",
        "config.channel",
        "config.token",
        "config.other",
    }
    assert "q7-zz" not in json.dumps(bad.body)
    assert stack.client("ursula").post(P + "/install", {"pluginId": catalog_id}).status == 403

    made = install(operator, catalog_id)
    assert made.status == 201, made
    signing = made.body["signingSecret"]
    assert signing.startswith("whsec_")
    assert len(base64.b64decode(signing.removeprefix("whsec_"))) == 24
    assert made.body["config"] == {"url": "https://hooks.example.com/x", "channel": "#ops"}
    assert made.body["secretConfig"] == ["token"]
    assert made.body["catalogId"] == catalog_id
    assert made.body["installedBy"] == "olga"

    # reads: the mirror row, with neither the secret config nor the signing secret
    user = stack.client("ursula")
    one = user.get(P + "/hook")
    listed = user.get(P + "/installed")
    assert one.status == 200, one
    assert [p["id"] for p in listed.body["plugins"]] == ["hook"]
    for answer in (one.body, listed.body):
        text = json.dumps(answer)
        assert TOKEN not in text
        assert signing not in text
        # nor, for a user, where it delivers or how it is configured (a webhook URL is often a
        # credential itself); operators see both
        assert "hooks.example.com" not in text
    assert "config" not in one.body and "url" not in one.body
    operator_view = stack.client("olga", "operator").get(P + "/hook").body
    assert operator_view["config"] == {"url": "https://hooks.example.com/x", "channel": "#ops"}
    with psycopg.connect(stack.database_url) as conn:
        rows = conn.execute("SELECT row_to_json(p)::text FROM installed_plugins p").fetchall()
        assert len(rows) == 1
        assert TOKEN not in rows[0][0]
        assert signing not in rows[0][0]

    # the install is audited (the audit log writes in the background), without the secret
    def audited() -> bool:
        with psycopg.connect(stack.database_url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM audit_log WHERE action = 'install' "
                "AND resource_type = 'plugin' AND resource_id = 'hook'"
            ).fetchone()
        return bool(row and row[0] == 1)

    assert wait_until(audited, TIMEOUT)
    with psycopg.connect(stack.database_url) as conn:
        for table in ("idempotency_keys", "audit_log"):
            dump = conn.execute(f"SELECT coalesce(json_agg(t)::text, '') FROM {table} t")  # noqa: S608
            text = str(dump.fetchone())
            assert TOKEN not in text
            assert signing not in text

    # the Plugin holds the public config only; the Secret, owned by it, the rest
    obj = plugin_object(api, stack.namespace, "hook")
    assert obj is not None
    assert TOKEN not in json.dumps(obj)
    assert obj["spec"]["catalogPlugin"] == {"repository": "plugins", "name": "audit-hook"}
    secret, data = secret_data(api, stack.namespace, "plugin-hook")
    owners = secret.metadata.owner_references
    assert [(o.kind, o.uid, o.controller) for o in owners] == [
        ("Plugin", obj["metadata"]["uid"], True)
    ]
    assert json.loads(data["config.json"]) == {"token": TOKEN}
    assert data["signing-secret"] == signing

    # a config change without the secret keeps it; with it replaces it; invalid is a 422
    changed = operator.request(
        "PUT", P + "/hook/config", {"config": {"url": "https://hooks.example.com/y"}}
    )
    assert changed.status == 200, changed
    assert changed.body["config"] == {"url": "https://hooks.example.com/y"}
    assert changed.body["secretConfig"] == ["token"]
    assert json.loads(secret_data(api, stack.namespace, "plugin-hook")[1]["config.json"]) == {
        "token": TOKEN
    }
    spec = (plugin_object(api, stack.namespace, "hook") or {})["spec"]
    assert spec["config"] == {"url": "https://hooks.example.com/y"}
    new_token = TOKEN + "-2"
    again = operator.request(
        "PUT",
        P + "/hook/config",
        {"config": {"url": "https://hooks.example.com/y", "token": new_token}},
    )
    assert again.status == 200, again
    assert new_token not in json.dumps(again.body)
    assert json.loads(secret_data(api, stack.namespace, "plugin-hook")[1]["config.json"]) == {
        "token": new_token
    }
    invalid = operator.request("PUT", P + "/hook/config", {"config": {"url": "http://plain"}})
    assert invalid.status == 422, invalid
    assert set(invalid.body["details"]["fields"]) == {"config.url"}

    # enable and disable flip spec.enabled, seen in the mirror at once
    assert operator.post(P + "/hook/disable").body["enabled"] is False
    assert user.get(P + "/hook").body["enabled"] is False
    assert operator.post(P + "/hook/enable").body["enabled"] is True
    assert user.get(P + "/hook").body["enabled"] is True
    assert user.post(P + "/hook/disable").status == 403

    # a second install under the same name is a conflict
    assert install(operator, catalog_id).status == 409


def test_an_idempotent_install_retry_gets_the_same_plugin_and_secret(stack: Stack) -> None:
    catalog_id = add_catalog_plugin(stack)
    operator = stack.client("olga", "operator")
    body = {"pluginId": catalog_id, "config": {"url": "https://hooks.example.com/x"}}
    headers = {"Idempotency-Key": "install-once-1"}
    first = operator.post(P + "/install", body, headers=headers)
    second = operator.post(P + "/install", body, headers=headers)
    assert first.status == second.status == 201, (first, second)
    assert first.body["id"] == second.body["id"] == "audit-hook"
    assert first.body["signingSecret"] == second.body["signingSecret"]
    assert len(operator.get(P + "/installed").body["plugins"]) == 1
    assert operator.get(f"{P}/catalog/{catalog_id}").body["installCount"] == 1  # counted once
    other = operator.post(P + "/install", {**body, "name": "other"}, headers=headers)
    assert other.status == 422, other


def test_approval_is_for_admins_only(stack: Stack, api: client.ApiClient) -> None:
    catalog_id = add_catalog_plugin(stack)
    operator = stack.client("olga", "operator")
    assert install(operator, catalog_id).status == 201
    user = stack.client("ursula")

    def phase() -> Any:
        return user.get(P + "/hook").body.get("phase")

    # the operator found the Secret the facade made (its config valid with the secret token)
    # and waits for an admin
    assert wait_until(lambda: phase() == "PendingApproval", TIMEOUT), user.get(P + "/hook")
    assert user.get(P + "/hook").body["approved"] is False
    assert operator.post(P + "/hook/approve").status == 403
    approved = stack.client("ada", "admin").post(P + "/hook/approve")
    assert approved.status == 200, approved
    assert approved.body["approvedPermissions"] == ["sessions.read"]
    obj = plugin_object(api, stack.namespace, "hook") or {}
    assert obj["spec"]["approvedPermissions"] == ["sessions.read"]
    assert wait_until(lambda: phase() == "Ready", TIMEOUT), user.get(P + "/hook")
    ready = operator.get(P + "/hook").body
    assert ready["approved"] is True
    assert ready["type"] == "webhook"
    assert ready["url"] == "https://hooks.example.com/x"
    assert ready["permissions"] == [
        {"name": "sessions.read", "risk": "high"},
        {"name": "events.receive", "risk": "low"},
    ]
    assert ready["version"] == "1.2.0"

    # an upgrade that asks for another high-risk permission waits for approval again
    upgraded = {
        **MANIFEST,
        "version": "1.3.0",
        "permissions": [*MANIFEST["permissions"], {"name": "sessions.write", "risk": "high"}],
    }
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE catalog_plugins SET version = '1.3.0', manifest = %s WHERE id = %s",
            (Jsonb(upgraded), catalog_id),
        )
    # the operator re-reads catalog entries on its drift timer; a change of the Plugin is sooner
    nudge = {"metadata": {"annotations": {"test/nudge": "1"}}}
    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "plugins", "hook", nudge
    )
    assert wait_until(lambda: phase() == "PendingApproval", TIMEOUT), user.get(P + "/hook")
    again = stack.client("ada", "admin").post(P + "/hook/approve")
    assert again.body["approvedPermissions"] == ["sessions.read", "sessions.write"]
    assert wait_until(lambda: phase() == "Ready", TIMEOUT), user.get(P + "/hook")
    assert user.get(P + "/hook").body["version"] == "1.3.0"
    assert stack.client("ada", "admin").post(P + "/nothing/approve").status == 404


def test_a_rating_per_user_replaces_and_moves_the_average(stack: Stack) -> None:
    catalog_id = add_catalog_plugin(stack)
    alice, bob = stack.client("alice"), stack.client("bob")
    rate = f"{P}/catalog/{catalog_id}/rate"
    assert alice.post(rate, {"rating": 5, "review": "great"}).body["ratingCount"] == 1
    both = bob.post(rate, {"rating": 3})
    assert both.status == 200, both
    assert (both.body["avgRating"], both.body["ratingCount"]) == (4.0, 2)
    replaced = alice.post(rate, {"rating": 1, "review": "changed my mind"})
    assert (replaced.body["avgRating"], replaced.body["ratingCount"]) == (2.0, 2)
    entry = alice.get(f"{P}/catalog/{catalog_id}")
    assert (entry.body["avgRating"], entry.body["ratingCount"]) == (2.0, 2)
    assert entry.body["configSchema"] == MANIFEST["configSchema"]
    assert alice.post(rate, {"rating": 6}).status == 422
    assert alice.post(f"{P}/catalog/999999/rate", {"rating": 2}).status == 404


def test_the_catalog_filters_and_pages(stack: Stack) -> None:
    catalog_id = add_catalog_plugin(stack)
    user = stack.client("ursula")
    for query, expected in (
        ("", [catalog_id]),
        ("?type=webhook", [catalog_id]),
        ("?type=theme", []),
        ("?q=AUDIT", [catalog_id]),
        ("?q=nothing-like-it", []),
        ("?tag=ops&category=audit", [catalog_id]),
        ("?page=2&limit=1", []),
    ):
        page = user.get(P + "/catalog" + query)
        assert page.status == 200, (query, page)
        assert [p["id"] for p in page.body["plugins"]] == expected, query
        assert page.body["total"] == (1 if expected or "page=2" in query else 0), query
    assert user.get(P + "/catalog?type=bogus").status == 422
    assert user.get(P + "/catalog/424242").status == 404


def test_plugin_repositories_are_repositories_of_type_plugin(stack: Stack) -> None:
    operator = stack.client("olga", "operator")
    template = operator.post(
        "/api/v1/repositories", {"name": "tpl", "url": "https://git.invalid/t.git", "suspend": True}
    )
    assert template.status == 201
    made = operator.post(
        P + "/repositories", {"name": "plg", "url": "https://git.invalid/p.git", "suspend": True}
    )
    assert made.status == 201, made
    assert (
        operator.post(
            P + "/repositories", {"url": "https://x.invalid/a.git", "type": "template"}
        ).status
        == 422
    )
    listed = stack.client("ursula").get(P + "/repositories")
    assert [r["id"] for r in listed.body["repositories"]] == ["plg"]
    assert operator.post(P + "/repositories/plg/sync").status == 202
    assert operator.post(P + "/repositories/tpl/sync").status == 404
    assert stack.client("ursula").post(P + "/repositories/plg/sync").status == 403


def test_a_kubectl_plugin_is_visible_and_uninstall_removes_it(
    stack: Stack, api: client.ApiClient
) -> None:
    add_catalog_plugin(stack)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Plugin",
        "metadata": {"name": "gitops-hook"},
        "spec": {
            "catalogPlugin": {"repository": "plugins", "name": "audit-hook"},
            "config": {"url": "https://hooks.example.com/z"},
        },
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, stack.namespace, "plugins", body
    )
    user = stack.client("ursula")
    assert wait_until(lambda: user.get(P + "/gitops-hook").status == 200, TIMEOUT)
    seen = stack.client("olga", "operator").get(P + "/gitops-hook").body
    assert seen["pluginName"] == "audit-hook"
    assert seen["installedBy"] is None
    assert seen["catalogId"] is not None
    assert stack.client("ursula").delete(P + "/gitops-hook").status == 403
    gone = stack.client("olga", "operator").delete(P + "/gitops-hook")
    assert gone.status == 204, gone
    assert user.get(P + "/gitops-hook").status == 404
    assert wait_until(lambda: plugin_object(api, stack.namespace, "gitops-hook") is None, TIMEOUT)
    assert stack.client("olga", "operator").delete(P + "/gitops-hook").status == 404


def test_a_secret_provided_after_its_plugin_is_seen_without_the_drift_timer(
    database: str,
    namespace: str,
    start_operator: Callable[..., Any],
    start_facade: Callable[..., Any],
    api: client.ApiClient,
) -> None:
    """An installer that makes the Secret after the Plugin (the facade does, it needs the uid;
    so may GitOps): the operator sees it within seconds, not at the next drift tick. The drift
    timer is an hour away here, so only the operator's own looks can find the Secret (the race
    behind a CI failure of test_approval_is_for_admins_only)."""
    start_operator(DATABASE_URL=database, ALLOW_LOCAL_REPOS="true", RECONCILE_INTERVAL="1h")
    facade = start_facade(DATABASE_URL=database)
    assert wait_until(facade.app[SERVICES].mirror.ready.is_set, 60)
    stack = Stack(facade.url, namespace, database, facade, facade.settings)
    operator = stack.client("olga", "operator")
    assert install(operator, add_catalog_plugin(stack)).status == 201
    hook = plugin_object(api, namespace, "hook")
    assert hook is not None
    _, made = secret_data(api, namespace, "plugin-hook")

    # the same Plugin under another name, applied with its Secret "provided" but not there yet
    late = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Plugin",
        "metadata": {"name": "late", "annotations": {SECRET_ANNOTATION: "provided"}},
        "spec": hook["spec"],
    }
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "plugins", late
    )

    def ready_reason() -> Any:
        conditions = ((plugin_object(api, namespace, "late") or {}).get("status") or {}).get(
            "conditions"
        ) or []
        return next((c.get("reason") for c in conditions if c.get("type") == "Ready"), None)

    assert wait_until(lambda: ready_reason() == "SecretMissing", TIMEOUT), ready_reason()
    uid = (plugin_object(api, namespace, "late") or {})["metadata"]["uid"]
    secret = plugin_secret(
        PluginRef("late", namespace, uid), made[SIGNING_KEY], json.loads(made[CONFIG_KEY])
    )
    client.CoreV1Api(api).create_namespaced_secret(namespace, secret)
    # on to the next rule: the high-risk permission waits for an admin
    assert wait_until(lambda: ready_reason() == "ApprovalRequired", TIMEOUT), ready_reason()
