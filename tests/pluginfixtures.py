"""Plugin manifests and a plugin repository's files, shared by the catalog and Plugin tests."""

from __future__ import annotations

import json
from typing import Any

# A webhook plugin: no image, its config's url is where events go; asks for nothing risky.
WEBHOOK: dict[str, Any] = {
    "name": "audit-hook",
    "version": "1.2.0",
    "displayName": "Audit hook",
    "description": "Posts every session event to an HTTPS endpoint.",
    "category": "Monitoring",
    "type": "webhook",
    "tags": ["audit", "webhook"],
    "configSchema": {
        "type": "object",
        "properties": {
            "url": {"type": "string", "pattern": "^https://"},
            "channel": {"type": "string", "minLength": 2},
            "retries": {"type": "integer", "minimum": 0, "maximum": 10},
            "token": {"type": "string", "writeOnly": True},
        },
        "required": ["url"],
        "additionalProperties": False,
    },
    "permissions": [{"name": "sessions.read", "risk": "low", "description": "session events"}],
    "events": ["session.*", "repository.synced"],
}

# A runnable plugin: an image and a port, and a high-risk permission that needs approval.
RECORDER: dict[str, Any] = {
    "name": "session-recorder",
    "version": "0.3.1",
    "displayName": "Session recorder",
    "type": "extension",
    "configSchema": {
        "type": "object",
        "properties": {"bucket": {"type": "string"}},
        "required": ["bucket"],
    },
    "permissions": [
        {"name": "sessions.read", "risk": "low"},
        {"name": "sessions.record", "risk": "high", "description": "records screens"},
        {"name": "network.egress", "risk": "medium"},
    ],
    "events": ["session.created", "session.deleted"],
    "image": "registry.example.com/streamspace/session-recorder:0.3.1",
    "port": 8080,
    "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
}

# Invalid: a runnable plugin without a port, and a risk level that does not exist.
BROKEN: dict[str, Any] = {
    "name": "broken-plugin",
    "version": "1.0.0",
    "type": "extension",
    "image": "registry.example.com/broken:1",
    "permissions": [{"name": "everything", "risk": "extreme"}],
}


def plugin_repository(*manifests: dict[str, Any]) -> dict[str, str]:
    """The files of a plugin repository, one directory per plugin, plus a README."""
    files = {"README.md": "# Plugins\n"}
    for manifest in manifests:
        files[f"plugins/{manifest['name']}/manifest.json"] = json.dumps(manifest, indent=2)
        files[f"plugins/{manifest['name']}/README.md"] = f"# {manifest['name']}\n"
    return files
