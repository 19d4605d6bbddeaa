"""The plugin manifest rules of docs/PLUGINS.md §1, one case per rule, and what the sync reports."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from streamspace.catalog.parse import parse_repository
from streamspace.plugins.manifest import manifest_problems, read_manifest

pytestmark = pytest.mark.unit

VALID: dict[str, Any] = {
    "name": "audit-hook",
    "version": "1.2.0",
    "displayName": "Audit hook",
    "type": "extension",
    "tags": ["audit"],
    "configSchema": {
        "type": "object",
        "properties": {
            "channel": {"type": "string"},
            "token": {"type": "string", "writeOnly": True},
        },
        "required": ["channel"],
    },
    "permissions": [
        {"name": "sessions.read", "risk": "high", "description": "reads sessions"},
        {"name": "network.egress", "risk": "medium"},
    ],
    "events": ["session.created", "session.*", "*"],
    "image": "registry.example.com/audit-hook:1.2.0",
    "port": 8080,
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
}


def with_(**changes: Any) -> dict[str, Any]:
    manifest = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return manifest


def test_a_full_manifest_is_valid_and_reads_back_typed() -> None:
    assert manifest_problems(VALID) == []
    manifest = read_manifest(VALID)
    assert manifest.runnable and manifest.port == 8080
    assert [(p.name, p.risk) for p in manifest.permissions] == [
        ("sessions.read", "high"),
        ("network.egress", "medium"),
    ]
    assert manifest.resources == {
        "requests": {"cpu": "50m", "memory": "64Mi"},
        "limits": {"memory": "128Mi"},
    }


def test_a_minimal_webhook_manifest_is_valid() -> None:
    minimal = {"name": "hook", "version": "1", "type": "webhook"}
    assert manifest_problems(minimal) == []
    assert not read_manifest(minimal).runnable
    # its url is where events go, shown as the Plugin's status.url: it cannot be secret
    hidden = {"type": "object", "properties": {"url": {"type": "string", "writeOnly": True}}}
    assert manifest_problems({**minimal, "configSchema": hidden}) == [
        "configSchema: a webhook plugin's url cannot be secret"
    ]


CASES = [
    pytest.param(["x"], "must hold an object", id="not-an-object"),
    pytest.param(with_(name="Audit_Hook"), "name 'Audit_Hook'", id="bad-name"),
    pytest.param(with_(name="a.b"), "name 'a.b'", id="dotted-name"),
    pytest.param(with_(version=None), "version is required", id="missing-version"),
    pytest.param(with_(version=""), "version is required", id="empty-version"),
    pytest.param(with_(type="virus"), "type 'virus' must be one of", id="bad-type"),
    pytest.param(with_(displayName=3), "displayName must be a string", id="bad-display-name"),
    pytest.param(with_(tags="audit"), "tags must be a list", id="bad-tags"),
    pytest.param(with_(configSchema=[]), "configSchema must be an object", id="schema-not-object"),
    pytest.param(
        with_(configSchema={"type": "object", "properties": {"a": {"type": "strnig"}}}),
        "configSchema at properties/a/type",
        id="schema-bad-type",
    ),
    pytest.param(
        with_(configSchema={"type": "object", "required": "channel"}),
        "configSchema at required",
        id="schema-bad-required",
    ),
    pytest.param(with_(permissions={"a": "high"}), "permissions must be a list", id="perm-list"),
    pytest.param(with_(permissions=["sessions.read"]), "permissions[0] must be", id="perm-str"),
    pytest.param(
        with_(permissions=[{"name": "x", "risk": "extreme"}]),
        "permissions[0].risk must be one of low, medium, high",
        id="perm-risk",
    ),
    pytest.param(with_(permissions=[{"risk": "low"}]), "permissions[0].name", id="perm-name"),
    pytest.param(
        with_(permissions=[{"name": "x", "risk": "low"}, {"name": "x", "risk": "high"}]),
        "permissions[1].name 'x' is listed twice",
        id="perm-twice",
    ),
    pytest.param(
        with_(permissions=[{"name": "x", "risk": "low", "scope": "all"}]),
        "permissions[0] has unknown field(s) scope",
        id="perm-unknown-field",
    ),
    pytest.param(
        with_(permissions=[{"name": "x", "risk": "low", "description": 1}]),
        "permissions[0].description must be a string",
        id="perm-description",
    ),
    pytest.param(with_(events="session.created"), "events must be a list", id="events-list"),
    pytest.param(
        with_(events=["session.exploded"]), "events[0] 'session.exploded'", id="unknown-event"
    ),
    pytest.param(with_(events=["sesion.*"]), "events[0] 'sesion.*'", id="prefix-matches-none"),
    pytest.param(with_(events=["*.created"]), "events[0] '*.created'", id="star-not-trailing"),
    pytest.param(with_(port=None), "port is required with image", id="image-without-port"),
    pytest.param(with_(port=0), "port is required with image", id="port-zero"),
    pytest.param(with_(port=65536), "port is required with image", id="port-too-high"),
    pytest.param(with_(port="8080"), "port is required with image", id="port-string"),
    pytest.param(with_(image=None), "port is only for runnable plugins", id="port-without-image"),
    pytest.param(with_(image="a b"), "image must be a container image", id="bad-image"),
    pytest.param(with_(resources=[]), "resources must be an object", id="resources-list"),
    pytest.param(
        with_(resources={"requests": {"cpu": "lots"}}),
        "resources.requests.cpu 'lots' is not a quantity",
        id="bad-quantity",
    ),
    pytest.param(
        with_(resources={"maximum": {"cpu": "1"}}), "resources must be an object", id="bad-part"
    ),
]


@pytest.mark.parametrize(("manifest", "expected"), CASES)
def test_each_rule_is_reported(manifest: Any, expected: str) -> None:
    problems = manifest_problems(manifest)
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_at_once() -> None:
    problems = manifest_problems(with_(version=None, type="virus", port=0))
    assert len(problems) == 3, problems


def test_invalid_manifests_are_reported_by_path_and_name_and_not_stored() -> None:
    files = [
        ("good/manifest.json", json.dumps(VALID).encode()),
        ("bad/manifest.json", json.dumps(with_(name="bad", port=70000)).encode()),
    ]
    result = parse_repository(files, kind="plugin")
    assert [p.name for p in result.plugins] == ["audit-hook"]
    assert len(result.problems) == 1
    assert result.problems[0].startswith("bad/manifest.json: bad: port is required with image")
    assert "bad/manifest.json: bad: port" in result.summary("plugin")
