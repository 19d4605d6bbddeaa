"""A plugin's configuration against its manifest's ``configSchema`` (the ``jsonschema`` library).

Pure. Used wherever configuration is written or checked: the operator validates the merged
configuration (``spec.config`` plus the Secret's ``config.json``) on every reconcile, and the API
can call the same functions before it writes. Errors name the field path of each failure
(``channel``, ``targets[2].url``; ``(root)`` for the object itself).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jsonschema import ValidationError
from jsonschema.validators import Draft202012Validator, validator_for


def secret_properties(schema: Mapping[str, Any]) -> frozenset[str]:
    """Top-level properties the schema marks secret (``writeOnly`` or ``format: password``):
    they live only in the plugin's Secret, never in the spec, the database or a response."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return frozenset()
    return frozenset(
        name
        for name, sub in properties.items()
        if isinstance(sub, Mapping)
        and (sub.get("writeOnly") is True or sub.get("format") == "password")
    )


def field_path(parts: Iterable[str | int]) -> str:
    """``["targets", 2, "url"]`` → ``targets[2].url``; the empty path is ``(root)``."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _describe(error: ValidationError, secrets: Mapping[str, Any]) -> tuple[str, str]:
    path = list(error.absolute_path)
    # jsonschema quotes the failing value in its message; a secret's value must never reach a
    # status or a response, so its failures (and any message quoting one) say only the rule.
    hidden = [str(v) for v in secrets.values() if str(v)]
    if (path and path[0] in secrets) or any(value in error.message for value in hidden):
        return field_path(path), f"does not satisfy {error.validator!s} (a secret value)"
    required = error.validator_value
    if error.validator == "required" and isinstance(error.instance, Mapping):
        # jsonschema reports a missing property at its parent; name the property itself.
        names = required if isinstance(required, list) else []
        missing = [p for p in names if isinstance(p, str) and p not in error.instance]
        if missing:
            return field_path([*path, missing[0]]), "is required"
    return field_path(path), error.message


def config_errors(schema: Mapping[str, Any], config: Mapping[str, Any]) -> list[str]:
    """``"<field path>: <what is wrong>"`` for every failure, sorted by path; empty when valid.
    Failures of secret properties name the rule, never the value.

    The schema was checked against its meta-schema when the catalog stored it; the dialect is
    its ``$schema``, draft 2020-12 when it names none.
    """
    cls = validator_for(schema, default=Draft202012Validator)
    validator = cls(dict(schema))
    secrets = {k: v for k, v in config.items() if k in secret_properties(schema)}
    found = sorted({_describe(e, secrets) for e in validator.iter_errors(dict(config))})
    return [f"{path}: {message}" for path, message in found]


def misplaced_secrets(schema: Mapping[str, Any], plain: Mapping[str, Any]) -> list[str]:
    """Secret properties found in the non-secret configuration (``spec.config``)."""
    return [
        f"{name}: is secret; it belongs in the plugin's Secret, not in spec.config"
        for name in sorted(secret_properties(schema) & set(plain))
    ]
