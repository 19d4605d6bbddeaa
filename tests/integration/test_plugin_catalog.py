"""A plugin repository synced into ``catalog_plugins`` by the real operator: a real Git
repository served over loopback HTTPS, the real API server and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from gitfixtures import https_git_server, make_repo
from pluginfixtures import BROKEN, RECORDER, WEBHOOK, plugin_repository
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

TIMEOUT = 60


def repo_status(objects: Objects, name: str) -> dict[str, Any]:
    return dict((objects.get("templaterepositories", name) or {}).get("status") or {})


def wait_synced(objects: Objects, name: str, commit: str) -> dict[str, Any]:
    def done() -> bool:
        status = repo_status(objects, name)
        return status.get("phase") == "Ready" and status.get("lastSyncCommit") == commit

    assert wait_until(done, TIMEOUT), repo_status(objects, name)
    return repo_status(objects, name)


def catalog_plugins(database: str) -> dict[str, dict[str, Any]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT id, repository_uid::text, name, version, display_name, plugin_type, tags,"
            " manifest FROM catalog_plugins"
        ).fetchall()
    return {
        name: {
            "id": id_,
            "repository_uid": uid,
            "version": version,
            "display_name": display,
            "type": kind,
            "tags": tags,
            "manifest": manifest,
        }
        for id_, uid, name, version, display, kind, tags, manifest in rows
    }


def test_a_plugin_repository_syncs_valid_manifests_and_reports_invalid_ones(
    api: client.ApiClient,
    namespace: str,
    start_operator: Callable[..., Any],
    database: str,
    tmp_path: Path,
) -> None:
    objects = Objects(api, namespace)
    migrate(database)
    git = make_repo(tmp_path / "plugins", plugin_repository(WEBHOOK, RECORDER, BROKEN))
    with https_git_server({"plugins.git": git.path}, tmp_path, None, None) as server:
        start_operator(
            DATABASE_URL=database,
            SYNC_WORK_DIR=str(tmp_path / "work"),
            SYNC_CA_BUNDLE=str(server.ca_bundle),
        )
        objects.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "templaterepositories",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TemplateRepository",
                "metadata": {"name": "official-plugins"},
                "spec": {"url": f"{server.base_url}/plugins.git", "type": "plugin"},
            },
        )
        status = wait_synced(objects, "official-plugins", git.head())
        assert status["pluginCount"] == 2
        assert status["templateCount"] == 0
        message = status["message"]
        assert "plugins/broken-plugin/manifest.json: broken-plugin:" in message
        assert "port is required with image" in message
        assert "permissions[0].risk must be one of low, medium, high" in message
        uid = objects.get("templaterepositories", "official-plugins")["metadata"]["uid"]  # type: ignore[index]
        rows = catalog_plugins(database)
        assert set(rows) == {"audit-hook", "session-recorder"}
        assert rows["audit-hook"] | {"id": 0} == {
            "id": 0,
            "repository_uid": uid,
            "version": "1.2.0",
            "display_name": "Audit hook",
            "type": "webhook",
            "tags": ["audit", "webhook"],
            "manifest": WEBHOOK,
        }
        assert rows["session-recorder"]["manifest"]["port"] == 8080
        kept_id = rows["session-recorder"]["id"]

        # The webhook plugin leaves the repository: its row goes, the other keeps its id.
        head = git.commit({}, remove=["plugins/audit-hook/manifest.json"], message="drop one")
        objects.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "templaterepositories",
            "official-plugins",
            {"metadata": {"annotations": {"stream.space/sync-requested": "1"}}},
        )
        status = wait_synced(objects, "official-plugins", head)
    assert status["pluginCount"] == 1
    rows = catalog_plugins(database)
    assert set(rows) == {"session-recorder"}
    assert rows["session-recorder"]["id"] == kept_id
