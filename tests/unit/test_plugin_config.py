"""Plugin configuration against its schema: field paths, secret splitting, the Secret's shape,
and the mirror row of a Plugin (which never holds a secret)."""

from __future__ import annotations

import base64
import json

import pytest

from streamspace.db.mirror import PLUGINS, plugin_row
from streamspace.plugins import fields as plugin_config
from streamspace.plugins import secret as plugin_secret
from streamspace.plugins.workload import PluginRef
from streamspace_facade.mirror import VIEWS
from streamspace_facade.plugin_writes import merge_patch

pytestmark = pytest.mark.unit

SCHEMA = {
    "type": "object",
    "required": ["url", "token"],
    "additionalProperties": False,
    "properties": {
        "url": {"type": "string", "format": "uri"},
        "channel": {"type": "string", "minLength": 2},
        "token": {"type": "string", "writeOnly": True, "minLength": 8},
        "auth": {
            "type": "object",
            "properties": {
                "user": {"type": "string"},
                "password": {"type": "string", "format": "password"},
            },
        },
    },
}


def test_every_failing_field_is_named_by_its_path() -> None:
    found = plugin_config.problems(SCHEMA, {"channel": "x", "extra": 1, "auth": {"user": 5}})
    assert set(found) == {
        "config.url",
        "config.token",
        "config.channel",
        "config.extra",
        "config.auth.user",
    }
    assert found["config.url"] == "required"
    assert found["config.extra"] == "unknown property"


def test_a_secret_value_is_never_quoted_in_a_problem() -> None:
    found = plugin_config.problems(SCHEMA, {"url": "https://x.example", "token": "hunter2"})
    assert set(found) == {"config.token"}
    assert "hunter2" not in found["config.token"]


def test_valid_config_has_no_problems() -> None:
    assert plugin_config.problems(SCHEMA, {"url": "https://x.example", "token": "12345678"}) == {}
    assert plugin_config.problems(None, {"anything": 1}) == {}


def test_secret_properties_are_split_out_by_top_level_property() -> None:
    config = {
        "url": "https://x.example",
        "token": "12345678",
        "auth": {"user": "bob", "password": "pw"},
    }
    public, secret = plugin_config.split(SCHEMA, config)
    # auth holds a secret: it goes whole, as the operator merges top-level properties
    assert public == {"url": "https://x.example"}
    assert secret == {"token": "12345678", "auth": {"user": "bob", "password": "pw"}}
    assert plugin_config.merge(public, secret) == config
    assert plugin_config.names(secret) == ["auth", "token"]
    assert plugin_config.secret_paths(SCHEMA) == {("token",), ("auth", "password")}


def test_an_invalid_schema_is_reported() -> None:
    assert plugin_config.schema_problem({"type": "no-such-type"}) is not None
    assert plugin_config.schema_problem(SCHEMA) is None


def test_the_secret_is_owned_by_its_plugin_and_holds_both_values() -> None:
    plugin = PluginRef("hook", "team-a", "u-1")
    signing = plugin_secret.new_signing_secret()
    assert signing.startswith("whsec_")
    assert len(base64.b64decode(signing.removeprefix("whsec_"))) == 24
    body = plugin_secret.plugin_secret(plugin, signing, {"token": "t"})
    assert body["metadata"]["name"] == "plugin-hook"
    assert plugin_secret.owned_by(body, "u-1")
    assert not plugin_secret.owned_by(body, "u-2")
    assert plugin_secret.signing_secret(body) == signing
    assert plugin_secret.secret_config(body) == {"token": "t"}
    raw = base64.b64decode(body["data"]["config.json"])
    assert json.loads(raw) == {"token": "t"}


def test_the_mirror_row_of_a_plugin() -> None:
    obj = {
        "metadata": {
            "name": "hook",
            "namespace": "ns",
            "uid": "u-1",
            "resourceVersion": "7",
            "annotations": {"stream.space/secret-config": "token,auth.password"},
        },
        "spec": {
            "catalogPlugin": {"repository": "official", "name": "audit-hook", "version": "1.0"},
            "enabled": False,
            "config": {"url": "https://x.example"},
            "approvedPermissions": ["sessions.read"],
        },
        "status": {
            "phase": "Ready",
            "pluginType": "webhook",
            "permissions": [{"name": "sessions.read", "risk": "high"}],
            "conditions": [{"type": "Approved", "status": "True"}],
            "events": ["session.created"],
        },
    }
    row = plugin_row(obj)
    assert row["enabled"] is False
    assert row["approved"] is True
    assert row["secret_keys"] == ["auth.password", "token"]
    assert row["repository"] == "official"
    assert row["plugin_name"] == "audit-hook"
    assert row["version"] == "1.0"
    assert row["config"] == {"url": "https://x.example"}
    # a plugin.* event carries the plugin as users see it: not its configuration or URL
    data = VIEWS[PLUGINS.name]({**row, "created_at": None})
    assert data["pluginName"] == "audit-hook" and data["enabled"] is False
    assert "x.example" not in json.dumps(data)


def test_merge_patch_removes_and_changes_keys() -> None:
    old = {"a": 1, "b": {"c": 1, "d": 2}, "e": 3}
    new = {"a": 1, "b": {"c": 5}, "f": 4}
    assert merge_patch(old, new) == {"e": None, "b": {"c": 5, "d": None}, "f": 4}
