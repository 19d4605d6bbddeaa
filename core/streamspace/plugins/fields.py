"""A plugin's configuration against its manifest's ``configSchema`` (docs/PLUGINS.md §2), the one
implementation both processes use: the API checks every write (a 422 naming each field) and the
operator checks the merged configuration (``spec.config`` plus the Secret's ``config.json``) on
every reconcile (its ``ConfigValid`` condition). Pure.

Validation names every failing field path (``config.url``, ``config.auth.token``; the operator
says them relative to the configuration: ``url``), never the value of a secret property: a
failure under a secret path names only the rule, and so does any message that would quote a
secret value (a combinator at the root quotes the whole configuration). The dialect is the
schema's ``$schema``, draft 2020-12 when it names none, as when the catalog checked it.

Secret properties are those the schema marks ``writeOnly: true`` or ``format: password``.
The split is by top-level property, as the operator merges
(``{**spec.config, **config.json}``): a top-level property that is secret, or has a secret
property anywhere inside its ``properties``, goes whole to the plugin's Secret; the rest to the
Plugin's ``spec.config``. (Subschemas reached only through ``$ref`` or combinators are not
searched, so a manifest marks its secrets inline.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

Config = dict[str, Any]


def is_secret(schema: Any) -> bool:
    return isinstance(schema, Mapping) and (
        schema.get("writeOnly") is True or schema.get("format") == "password"
    )


def _properties(schema: Any) -> Mapping[str, Any]:
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    return props if isinstance(props, Mapping) else {}


def secret_paths(schema: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """The paths of every property the schema marks secret."""
    found: set[tuple[str, ...]] = set()
    for name, sub in _properties(schema).items():
        path = (*prefix, str(name))
        if is_secret(sub):
            found.add(path)
        else:
            found |= secret_paths(sub, path)
    return found


def secret_properties(schema: Any) -> frozenset[str]:
    """Top-level properties kept in the plugin's Secret: secret, or holding a secret property."""
    return frozenset(
        str(name)
        for name, sub in _properties(schema).items()
        if is_secret(sub) or secret_paths(sub)
    )


def split(schema: Any, config: Mapping[str, Any]) -> tuple[Config, Config]:
    """``config`` as (non-secret part, secret part), by top-level property."""
    kept = secret_properties(schema)
    public = {k: v for k, v in config.items() if k not in kept}
    secret = {k: v for k, v in config.items() if k in kept}
    return public, secret


def misplaced(schema: Any, public: Mapping[str, Any]) -> list[str]:
    """Secret properties found in the non-secret configuration (a Plugin's ``spec.config``)."""
    return sorted(secret_properties(schema) & {str(k) for k in public})


def merge(public: Mapping[str, Any], secret: Mapping[str, Any]) -> Config:
    """The whole configuration again, as the operator merges it (secret values win)."""
    return {**public, **secret}


def names(secret: Mapping[str, Any]) -> list[str]:
    """The secret properties that have a value (to say which are set, never what they are)."""
    return sorted(str(k) for k in secret)


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` is not a usable JSON Schema (draft 2020-12), or None."""
    if not isinstance(schema, Mapping | bool):
        return "configSchema must be an object"
    try:
        _validator_class(schema).check_schema(schema)
    except SchemaError as exc:
        return f"configSchema is not a valid JSON Schema: {exc.message}"
    return None


def problems(schema: Any, config: Mapping[str, Any], where: str = "config") -> dict[str, str]:
    """Field path → problem for everything in ``config`` the schema refuses (empty: valid).

    A missing required property is reported at its own path. Problems at a secret path never
    quote the value (jsonschema's messages do)."""
    if schema is None:
        return {}
    cls = _validator_class(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    secrets = secret_paths(schema)
    hidden = _secret_values(config, secrets)
    found: dict[str, str] = {}
    for error in validator.iter_errors(dict(config)):
        path = tuple(str(p) for p in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, Mapping):
            for name in error.validator_value:
                if name not in error.instance:
                    found[_dotted(where, (*path, str(name)))] = "required"
            continue
        if (
            error.validator == "additionalProperties"
            and isinstance(error.instance, Mapping)
            and isinstance(error.schema, Mapping)
            and not error.schema.get("patternProperties")
        ):
            allowed = set(_properties(error.schema))
            for name in error.instance:
                if name not in allowed:
                    found[_dotted(where, (*path, str(name)))] = "unknown property"
            continue
        if any(path[: len(s)] == s for s in secrets) or any(v in error.message for v in hidden):
            message = f"invalid value (fails '{error.validator}')"
        else:
            message = error.message
        found.setdefault(_dotted(where, path), message)
    return found


def nul_paths(value: Any, where: str = "config") -> dict[str, str]:
    """Paths of strings (keys or values) holding NUL characters, which PostgreSQL cannot store."""
    found: dict[str, str] = {}
    if isinstance(value, str) and "\x00" in value:
        found[where] = "must not contain NUL characters"
    elif isinstance(value, Mapping):
        for key, item in value.items():
            path = f"{where}.{key}"
            if "\x00" in str(key):
                found[where] = "keys must not contain NUL characters"
            else:
                found.update(nul_paths(item, path))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.update(nul_paths(item, f"{where}.{i}"))
    return found


def _validator_class(schema: Any) -> Any:
    return validator_for(schema, default=Draft202012Validator)


def _secret_values(config: Mapping[str, Any], paths: set[tuple[str, ...]]) -> list[str]:
    """The text of every value found at a secret path (to keep it out of messages)."""
    found: list[str] = []
    for path in paths:
        value: Any = config
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        if value is not None and str(value):
            found.append(str(value))
    return found


def _dotted(where: str, path: tuple[str, ...]) -> str:
    return ".".join((where, *path) if where else path) if path else (where or "(root)")
