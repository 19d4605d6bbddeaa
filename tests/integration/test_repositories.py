"""TemplateRepository sync with the real operator, apiserver, PostgreSQL and Git repositories."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from gitfixtures import (
    PUBLIC_FORMAT,
    PUBLIC_FORMAT_TEMPLATES,
    https_git_server,
    make_repo,
    ssh_git_server,
)
from streamspace.catalog.credentials import credential_secret
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

TIMEOUT = 60
PASSWORD = "s3cret-Pa55word-never-shown"


@pytest.fixture
def objects(api: client.ApiClient, namespace: str) -> Objects:
    return Objects(api, namespace)


@pytest.fixture
def run_operator(
    start_operator: Callable[..., Any], database: str, tmp_path: Path
) -> Callable[..., Any]:
    migrate(database)

    def start(**env: str) -> Any:
        settings = {
            "DATABASE_URL": database,
            "ALLOW_LOCAL_REPOS": "true",
            "SYNC_WORK_DIR": str(tmp_path / "work"),
            **env,
        }
        return start_operator(**settings)

    return start


def repository(objects: Objects, name: str, spec: dict[str, Any]) -> None:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TemplateRepository",
        "metadata": {"name": name},
        "spec": spec,
    }
    objects.custom.create_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "templaterepositories", body
    )


def repo_status(objects: Objects, name: str) -> dict[str, Any]:
    return dict((objects.get("templaterepositories", name) or {}).get("status") or {})


def wait_synced(
    objects: Objects, name: str, phase: str = "Ready", commit: str | None = None
) -> dict[str, Any]:
    def done() -> bool:
        status = repo_status(objects, name)
        return status.get("phase") == phase and (
            commit is None or status.get("lastSyncCommit") == commit
        )

    assert wait_until(done, TIMEOUT), repo_status(objects, name)
    return repo_status(objects, name)


def catalog(database: str) -> dict[str, tuple[str, str]]:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT name, app_type, source_path FROM catalog_templates").fetchall()
    return {name: (app_type, path) for name, app_type, path in rows}


def catalog_ids(database: str) -> dict[str, int]:
    with psycopg.connect(database) as conn:
        return dict(conn.execute("SELECT name, id FROM catalog_templates").fetchall())


def request_sync(objects: Objects, name: str, token: str) -> None:
    objects.custom.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        objects.ns,
        "templaterepositories",
        name,
        {"metadata": {"annotations": {"stream.space/sync-requested": token}}},
    )


def test_public_format_repository_syncs_into_the_catalog(
    objects: Objects, run_operator: Callable[..., Any], database: str, tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    git.symlink("links/escape.yaml", "/etc/passwd")
    head = git.commit({}, message="add a symlink")
    run_operator()
    repository(objects, "public", {"url": git.url})
    status = wait_synced(objects, "public")
    assert status["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
    assert status["lastSyncCommit"] == head
    assert status["pluginCount"] == 0
    message = status["message"]
    assert "firefox: kept browsers/firefox.yaml, ignored duplicates/firefox.yaml" in message
    assert "broken/bad.yaml" in message and "broken/bad-name.yaml" in message
    assert "broken/no-image.yaml" in message
    assert "links/escape.yaml (link or submodule, not followed)" in message
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Ready": "True"}
    rows = catalog(database)
    assert set(rows) == PUBLIC_FORMAT_TEMPLATES
    assert rows["vscode"][0] == "webapp" and rows["firefox"][0] == "desktop"
    assert rows["gimp"][1] == "Design, Graphics/gimp.yaml"
    assert "Synced" in [e.reason for e in objects.core.list_namespaced_event(objects.ns).items]


def test_auto_install_materialises_updates_and_prunes_templates(
    objects: Objects, run_operator: Callable[..., Any], database: str, tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    objects.create("templates", "chromium", {"displayName": "Mine", "baseImage": "mine:1"})
    run_operator()
    repository(objects, "auto", {"url": git.url, "autoInstall": True})
    status = wait_synced(objects, "auto")
    assert "not installed, a Template of that name exists: chromium" in status["message"]
    mine = objects.get("templates", "chromium")
    assert mine is not None and mine["spec"]["displayName"] == "Mine"  # left alone

    def templates() -> dict[str, dict[str, Any]]:
        items = objects.custom.list_namespaced_custom_object(
            GROUP, VERSION, objects.ns, "templates", label_selector="stream.space/repository=auto"
        )["items"]
        return {t["metadata"]["name"]: t for t in items}

    assert set(templates()) == PUBLIC_FORMAT_TEMPLATES - {"chromium"}
    firefox = templates()["firefox"]
    assert firefox["spec"]["vnc"] == {"enabled": True, "port": 3000}
    assert "kasmvnc" not in firefox["spec"]
    assert firefox["spec"]["defaultResources"]["limits"] == {"cpu": "1000m", "memory": "2Gi"}
    assert firefox["metadata"]["ownerReferences"][0]["kind"] == "TemplateRepository"
    assert wait_until(
        lambda: all(t.get("status", {}).get("valid") for t in templates().values()), TIMEOUT
    )

    ids = catalog_ids(database)
    with psycopg.connect(database) as conn:  # what the facade's install does, three times
        conn.execute("UPDATE catalog_templates SET install_count = 3 WHERE name = 'firefox'")

    # A push, then an on-demand sync: gimp goes, firefox changes.
    changed = PUBLIC_FORMAT["browsers/firefox.yaml"].replace(
        "displayName: Firefox", "displayName: Firefox ESR"
    )
    head = git.commit({"browsers/firefox.yaml": changed}, remove=["Design, Graphics/gimp.yaml"])
    request_sync(objects, "auto", "1")
    status = wait_synced(objects, "auto", commit=head)
    assert status["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES) - 1
    assert wait_until(lambda: "gimp" not in templates(), TIMEOUT)
    assert objects.get("templates", "chromium") is not None  # not ours: never pruned
    assert templates()["firefox"]["spec"]["displayName"] == "Firefox ESR"
    assert "gimp" not in catalog(database)
    # Rows are upserted by (repository, name): ids and install counts survive the re-sync.
    assert catalog_ids(database) == {n: i for n, i in ids.items() if n != "gimp"}
    with psycopg.connect(database) as conn:
        row = conn.execute(
            "SELECT install_count, display_name FROM catalog_templates WHERE name = 'firefox'"
        ).fetchone()
    assert row == (3, "Firefox ESR")


def test_local_repositories_need_permission(
    objects: Objects, run_operator: Callable[..., Any], tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    run_operator(ALLOW_LOCAL_REPOS="false")
    repository(objects, "local", {"url": git.url})
    status = wait_synced(objects, "local", phase="Failed")
    assert "local repositories are disabled" in status["message"]
    assert status["conditions"][0]["reason"] == "InvalidURL"


def test_a_failing_repository_does_not_affect_the_others(
    objects: Objects, run_operator: Callable[..., Any], tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    run_operator()
    repository(objects, "broken", {"url": f"file://{tmp_path}/does-not-exist"})
    repository(objects, "missing-branch", {"url": git.url, "branch": "nope"})
    repository(objects, "good", {"url": git.url})
    wait_synced(objects, "good")
    assert "not found" in wait_synced(objects, "missing-branch", phase="Failed")["message"]
    assert wait_synced(objects, "broken", phase="Failed")["message"].startswith("fetch failed")


@pytest.mark.parametrize("auth", ["basic", "token"])
def test_https_with_credentials_and_no_leaks(
    objects: Objects,
    run_operator: Callable[..., Any],
    tmp_path: Path,
    auth: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    username = "alice" if auth == "basic" else "x-access-token"
    keys = {"username": username, "password": PASSWORD} if auth == "basic" else {"token": PASSWORD}
    wrong = {**keys, ("password" if auth == "basic" else "token"): "wrong-" + PASSWORD}
    caplog.set_level(logging.DEBUG)
    with https_git_server({"t.git": git.path}, tmp_path, username, PASSWORD) as server:
        for name, data in (("good-creds", keys), ("bad-creds", wrong)):
            objects.core.create_namespaced_secret(
                objects.ns, credential_secret(name, f"{server.base_url}/t.git", data, {})
            )
        run_operator(SYNC_CA_BUNDLE=str(server.ca_bundle))
        for name in ("good-creds", "bad-creds"):
            repository(
                objects,
                name,
                {
                    "url": f"{server.base_url}/t.git",
                    "auth": {"type": auth, "secretRef": {"name": name}},
                },
            )
        assert wait_synced(objects, "good-creds")["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
        failed = wait_synced(objects, "bad-creds", phase="Failed")
        assert any(h.startswith("Basic ") for h in server.requests)
        assert failed["conditions"][0]["reason"] == "AuthFailed"
    everything = [
        str(failed),
        str(repo_status(objects, "good-creds")),
        str([(e.reason, e.message) for e in objects.core.list_namespaced_event(objects.ns).items]),
        caplog.text,
    ]
    assert not any(PASSWORD in text for text in everything)


def test_no_credentials_against_a_protected_server_fails_cleanly(
    objects: Objects, run_operator: Callable[..., Any], tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    with https_git_server({"t.git": git.path}, tmp_path, "alice", PASSWORD) as server:
        run_operator(SYNC_CA_BUNDLE=str(server.ca_bundle))
        repository(objects, "anon", {"url": f"{server.base_url}/t.git"})
        assert wait_synced(objects, "anon", phase="Failed")["message"].startswith("fetch failed")


def test_deleting_a_repository_removes_its_catalog(
    objects: Objects, run_operator: Callable[..., Any], database: str, tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    run_operator()
    repository(objects, "gone", {"url": git.url})
    wait_synced(objects, "gone")
    assert catalog(database)
    objects.custom.delete_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "templaterepositories", "gone"
    )
    assert wait_until(lambda: not catalog(database), TIMEOUT)


def test_ssh_with_a_deploy_key(
    objects: Objects,
    run_operator: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    caplog.set_level(logging.DEBUG)
    with ssh_git_server(tmp_path / "sshd") as server:
        for name, known_hosts in (
            ("deploy-key", server.known_hosts),
            ("wrong-host", server.known_hosts.replace("[127.0.0.1]", "[127.0.0.2]")),
        ):
            data = {"ssh-privatekey": server.private_key, "known_hosts": known_hosts}
            objects.core.create_namespaced_secret(
                objects.ns, credential_secret(name, server.url(git.path), data, {})
            )
            repository(
                objects,
                name,
                {
                    "url": server.url(git.path),
                    "auth": {"type": "ssh", "secretRef": {"name": name}},
                },
            )
        run_operator()
        status = wait_synced(objects, "deploy-key")
        assert status["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
        assert status["lastSyncCommit"] == git.head()
        # An unknown host key is refused, not trusted on first use.
        assert wait_synced(objects, "wrong-host", phase="Failed")["message"].startswith(
            "fetch failed"
        )
    key_body = "".join(server.private_key.splitlines()[1:-1])
    texts = [
        str(repo_status(objects, "deploy-key")),
        str(repo_status(objects, "wrong-host")),
        caplog.text,
    ]
    assert not any(key_body[:40] in text for text in texts)


def test_timer_and_on_demand_syncs_of_one_repository_never_overlap(
    objects: Objects, database: str, tmp_path: Path, cluster: Any
) -> None:
    """Several syncs of one repository started at once run one after the other."""
    import asyncio  # noqa: PLC0415

    from psycopg_pool import AsyncConnectionPool  # noqa: PLC0415

    from streamspace.config import load_settings  # noqa: PLC0415
    from streamspace_operator import repositories  # noqa: PLC0415
    from streamspace_operator.context import Context  # noqa: PLC0415
    from streamspace_operator.kube import Kube, connect  # noqa: PLC0415

    migrate(database)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    repository(objects, "busy", {"url": git.url})
    spans: list[str] = []

    class Recording(Kube):
        async def patch_status(self, kind: str, namespace: str, name: str, status: Any) -> None:
            spans.append("start" if status.get("phase") == "Syncing" else "end")
            await super().patch_status(kind, namespace, name, status)

    async def run() -> None:
        settings = load_settings(
            {
                "KUBECONFIG": str(cluster.kubeconfig),
                "NAMESPACE": objects.ns,
                "DATABASE_URL": database,
                "ALLOW_LOCAL_REPOS": "true",
                "SYNC_WORK_DIR": str(tmp_path / "work"),
            }
        )
        api = await connect(str(cluster.kubeconfig))
        async with AsyncConnectionPool(database, open=False, kwargs={"autocommit": True}) as pool:
            ctx = Context(settings, kube=Recording(api), db=pool)
            await asyncio.gather(*(repositories.sync(ctx, objects.ns, "busy") for _ in range(4)))
        await api.close()

    asyncio.run(run())
    assert spans == ["start", "end"] * 4
    assert repo_status(objects, "busy")["phase"] == "Ready"
