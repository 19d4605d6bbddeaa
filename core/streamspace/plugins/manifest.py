"""A plugin's ``manifest.json`` (docs/PLUGINS.md §1): checked in full, read back typed. Pure.

The catalog sync stores a manifest only when :func:`manifest_problems` finds nothing; the
operator reads a stored one with :func:`read_manifest`, which trusts that check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import Draft202012Validator, validator_for

from streamspace import events
from streamspace.naming import is_dns_label
from streamspace.plugins.fields import secret_properties
from streamspace.quantities import parse_quantity

PLUGIN_TYPES = frozenset({"extension", "webhook", "api", "ui", "theme"})
RISKS = ("low", "medium", "high")
EVENT_TYPES = frozenset(events.EVENT_TYPES)
"""The event types of docs/PLUGINS.md §5 a plugin may subscribe to."""

_STRING_FIELDS = ("displayName", "description", "category", "icon", "image")


@dataclass(frozen=True)
class Permission:
    name: str
    risk: str
    description: str = ""


@dataclass(frozen=True)
class Manifest:
    """The parts of a valid manifest the operator and the API act on."""

    name: str
    version: str
    plugin_type: str
    config_schema: Mapping[str, Any]
    permissions: tuple[Permission, ...]
    events: tuple[str, ...]
    image: str | None
    port: int | None
    resources: Mapping[str, Mapping[str, str]]

    @property
    def runnable(self) -> bool:
        return self.image is not None


def event_pattern_known(pattern: str) -> bool:
    """A known event type, or a prefix ending in ``*`` that matches at least one."""
    if pattern.endswith("*"):
        prefix = pattern[:-1]
        return "*" not in prefix and any(t.startswith(prefix) for t in EVENT_TYPES)
    return pattern in EVENT_TYPES


def _schema_problems(schema: Any) -> list[str]:
    if not isinstance(schema, dict):
        return ["configSchema must be an object (a JSON Schema)"]
    cls = validator_for(schema, default=Draft202012Validator)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return [f"configSchema at {where}: {exc.message}"]
    return []


def _permission_problems(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        return ["permissions must be a list"]
    problems, seen = [], set()
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            problems.append(f"permissions[{i}] must be an object")
            continue
        name = item.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > 128:
            problems.append(f"permissions[{i}].name must be a non-empty string (128 at most)")
        elif name in seen:
            problems.append(f"permissions[{i}].name {name!r} is listed twice")
        else:
            seen.add(name)
        if item.get("risk") not in RISKS:
            problems.append(f"permissions[{i}].risk must be one of {', '.join(RISKS)}")
        if not isinstance(item.get("description", ""), str):
            problems.append(f"permissions[{i}].description must be a string")
        if extra := sorted(set(item) - {"name", "risk", "description"}):
            problems.append(f"permissions[{i}] has unknown field(s) {', '.join(extra)}")
    return problems


def _event_problems(raw: Any) -> list[str]:
    if not isinstance(raw, list):
        return ["events must be a list"]
    return [
        f"events[{i}] {event!r} is not a known event type"
        for i, event in enumerate(raw)
        if not isinstance(event, str) or not event_pattern_known(event)
    ]


def _runtime_problems(data: Mapping[str, Any]) -> list[str]:
    image, port = data.get("image"), data.get("port")
    if image is None:
        return ["port is only for runnable plugins (with an image)"] if port is not None else []
    if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
        return ["image must be a container image reference"]
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        return ["port is required with image, an integer from 1 to 65535"]
    return []


def _resource_problems(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, Mapping) or set(raw) - {"requests", "limits"}:
        return ["resources must be an object of requests and limits"]
    problems = []
    for part, values in raw.items():
        if not isinstance(values, Mapping):
            problems.append(f"resources.{part} must be an object")
            continue
        problems += [
            f"resources.{part}.{key} {value!r} is not a quantity"
            for key, value in values.items()
            if not _is_quantity(value)
        ]
    return problems


def _is_quantity(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return False
    try:
        parse_quantity(value)
    except ValueError:
        return False
    return True


def manifest_problems(data: Any) -> list[str]:
    """Everything wrong with a manifest, each naming its field; empty when it is valid."""
    if not isinstance(data, Mapping):
        return ["manifest.json must hold an object"]
    problems = []
    name, version = data.get("name"), data.get("version")
    if not isinstance(name, str) or not is_dns_label(name):
        problems.append(f"name {name!r} must be an object name (DNS label)")
    if not isinstance(version, str) or not version.strip() or len(version) > 128:
        problems.append("version is required (a string of 128 characters at most)")
    if data.get("type") not in PLUGIN_TYPES:
        problems.append(
            f"type {data.get('type')!r} must be one of {', '.join(sorted(PLUGIN_TYPES))}"
        )
    problems += [
        f"{key} must be a string"
        for key in _STRING_FIELDS
        if key in data and data[key] is not None and not isinstance(data[key], str)
    ]
    tags = data.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems.append("tags must be a list of strings")
    if "configSchema" in data:
        problems += _schema_problems(data["configSchema"])
        if data.get("type") == "webhook" and "url" in secret_properties(data["configSchema"]):
            # the delivery URL is the Plugin's status.url, shown to operators and mirrored
            problems.append("configSchema: a webhook plugin's url cannot be secret")
    problems += _permission_problems(data.get("permissions", []))
    problems += _event_problems(data.get("events", []))
    problems += _runtime_problems(data)
    problems += _resource_problems(data.get("resources"))
    return problems


def read_manifest(data: Mapping[str, Any]) -> Manifest:
    """The typed view of a manifest :func:`manifest_problems` accepted."""
    resources = data.get("resources") or {}
    return Manifest(
        name=str(data["name"]),
        version=str(data["version"]),
        plugin_type=str(data["type"]),
        config_schema=data.get("configSchema") or {},
        permissions=tuple(
            Permission(str(p["name"]), str(p["risk"]), str(p.get("description") or ""))
            for p in data.get("permissions") or []
        ),
        events=tuple(str(e) for e in data.get("events") or []),
        image=str(data["image"]) if data.get("image") else None,
        port=int(data["port"]) if data.get("image") else None,
        resources={
            part: {k: str(v) for k, v in (resources.get(part) or {}).items()}
            for part in ("requests", "limits")
            if resources.get(part)
        },
    )
