"""Attacks on repository sync (issue 13 items 1, 2 and 11), performed for real on loopback.

SSRF: a Git server that redirects to a plain-HTTP "metadata service", or to another host; a
repository on loopback while private networks are refused. Secret theft: repositories pointed at
a ServiceAccount-token-like Secret, a database Secret, and a credential made for another host.
Secret deletion: a foreign Secret named ``<repository>-auth``. Servers listen on 127.0.0.1 only;
the cases that need other addresses are in ``tests/unit/test_netguard.py`` (recording resolver).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from facade_testing import Client, token
from gitfixtures import (
    PUBLIC_FORMAT,
    PUBLIC_FORMAT_TEMPLATES,
    https_git_server,
    make_repo,
    recording_http_server,
)
from streamspace.catalog.credentials import credential_secret
from streamspace.catalog.errors import Reason, RepositoryError
from streamspace.catalog.git import Credentials, fetch_snapshot
from streamspace.catalog.netguard import NetworkGuard
from streamspace.db.migrate import migrate
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.integration

TIMEOUT = 60
METADATA = b"AccessKeyId=ASIA-STOLEN-KEY\nSecretAccessKey=stolen-secret-from-metadata\n"
STOLEN = ("ASIA-STOLEN-KEY", "stolen-secret-from-metadata")
REPOS = "/api/v1/repositories"


class Connections:
    """The real connector, recording where each connection went."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, address: tuple[str, int], timeout: float | None) -> socket.socket:
        self.seen.append(address)
        return socket.create_connection(address, timeout)


def _fetch(url: str, tmp_path: Path, ca: Path | None, guard: NetworkGuard) -> Any:
    return fetch_snapshot(
        url,
        "main",
        tmp_path / "work",
        Credentials(),
        repository_id="r",
        allow_local=False,
        ca_bundle=ca,
        guard=guard,
    )


# --- item 1: SSRF, at the fetch ---------------------------------------------------------------


def test_redirect_from_https_to_a_plain_http_metadata_service_is_refused(tmp_path: Path) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    with recording_http_server(METADATA) as meta:
        target = f"{meta.base_url}/latest/meta-data/iam/security-credentials/node"
        with https_git_server(
            {"t.git": git.path}, tmp_path, None, None, redirect=lambda path: target
        ) as server:
            with pytest.raises(RepositoryError) as caught:
                _fetch(f"{server.base_url}/t.git", tmp_path, server.ca_bundle, NetworkGuard(True))
            assert server.requests  # the redirect was served...
        assert meta.requests == []  # ...and not followed
    assert caught.value.reason is Reason.REDIRECT_REFUSED
    assert not any(part in str(caught.value) for part in STOLEN)


def test_redirect_to_another_host_is_refused(tmp_path: Path) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    connections = Connections()
    guard = NetworkGuard(True, connect=connections)
    with https_git_server({"t.git": git.path}, tmp_path, None, None) as plain:
        port = plain.base_url.rsplit(":", 1)[1]
        # same port, another name for the same machine: still another host
        other = f"https://localhost:{port}"
        with https_git_server(
            {"t.git": git.path},
            tmp_path,
            None,
            None,
            redirect=lambda path: other + path.replace("/moved.git", "/t.git", 1),
        ) as server:
            with pytest.raises(RepositoryError) as caught:
                _fetch(f"{server.base_url}/moved.git", tmp_path, server.ca_bundle, guard)
            own = int(server.base_url.rsplit(":", 1)[1])
        assert plain.requests == []
    assert caught.value.reason is Reason.REDIRECT_REFUSED
    assert set(connections.seen) == {("127.0.0.1", own)}


def test_a_redirect_within_the_origin_is_followed(tmp_path: Path) -> None:
    """A renamed repository on the same server (as GitHub redirects) still syncs."""
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)

    def moved(path: str) -> str | None:
        return path.replace("/old.git", "/t.git", 1) if path.startswith("/old.git") else None

    with https_git_server({"t.git": git.path}, tmp_path, None, None, redirect=moved) as server:
        snapshot = _fetch(
            f"{server.base_url}/old.git", tmp_path, server.ca_bundle, NetworkGuard(True)
        )
    assert snapshot.commit == git.head()
    assert {path for path, _ in snapshot.files} >= {"browsers/firefox.yaml", "catalog.yaml"}


def test_loopback_is_refused_unless_private_networks_are_allowed(tmp_path: Path) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    connections = Connections()
    with https_git_server({"t.git": git.path}, tmp_path, None, None) as server:
        with pytest.raises(RepositoryError) as caught:
            _fetch(
                f"{server.base_url}/t.git",
                tmp_path,
                server.ca_bundle,
                NetworkGuard(False, connect=connections),
            )
        assert server.requests == [] and connections.seen == []
        allowed = _fetch(f"{server.base_url}/t.git", tmp_path, server.ca_bundle, NetworkGuard(True))
    assert caught.value.reason is Reason.ADDRESS_REFUSED
    assert allowed.commit == git.head()


def test_tls_and_connection_failures_read_the_same(tmp_path: Path) -> None:
    """A closed port, a server with an untrusted certificate and a non-TLS port: one message."""
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    guard = NetworkGuard(True)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]  # bound, never listening: connection refused
        with (
            recording_http_server(METADATA) as plain,
            https_git_server({"t.git": git.path}, tmp_path, None, None) as server,
        ):
            plain_port = plain.base_url.rsplit(":", 1)[1]
            failures = []
            for url, ca in (
                (f"https://127.0.0.1:{closed_port}/t.git", server.ca_bundle),
                (f"{server.base_url}/t.git", None),  # the system CAs do not know the test CA
                (f"https://127.0.0.1:{plain_port}/t.git", server.ca_bundle),
            ):
                with pytest.raises(RepositoryError) as caught:
                    _fetch(url, tmp_path, ca, guard)
                failures.append((caught.value.reason, str(caught.value)))
    assert len(set(failures)) == 1, failures
    assert failures[0][0] is Reason.FETCH_FAILED


# --- the whole product: operator, facade, API server, PostgreSQL ------------------------------


@pytest.fixture
def product(
    start_operator: Callable[..., Any],
    start_facade: Callable[..., Any],
    database: str,
    tmp_path: Path,
) -> Callable[..., str]:
    """Start operator and facade sharing a database; extra env for both."""
    migrate(database)

    def start(**env: str) -> str:
        start_operator(DATABASE_URL=database, SYNC_WORK_DIR=str(tmp_path / "work"), **env)
        return str(start_facade(DATABASE_URL=database, **env).url)

    return start


def repo(objects: Objects, name: str) -> dict[str, Any]:
    return objects.get("templaterepositories", name) or {}


def wait_failed(objects: Objects, name: str) -> dict[str, Any]:
    def failed() -> bool:
        return (repo(objects, name).get("status") or {}).get("phase") == "Failed"

    assert wait_until(failed, TIMEOUT), repo(objects, name)
    return dict(repo(objects, name)["status"])


def ready_reason(status: dict[str, Any]) -> str:
    return str(next(c["reason"] for c in status["conditions"] if c["type"] == "Ready"))


def test_a_redirected_metadata_answer_never_reaches_anyone(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The repro of issue 13 item 1, through the product."""
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    with recording_http_server(METADATA) as meta:
        target = f"{meta.base_url}/latest/meta-data/iam/security-credentials/node"
        with https_git_server(
            {"t.git": git.path}, tmp_path, None, None, redirect=lambda path: target
        ) as server:
            url = product(SYNC_CA_BUNDLE=str(server.ca_bundle))
            olga = Client(url, token("olga", "operator"))
            alice = Client(url, token("alice"))
            r = olga.post(REPOS, {"name": "evil", "url": f"{server.base_url}/t.git"})
            assert r.status == 201, r
            status = wait_failed(objects, "evil")
        assert meta.requests == []
    assert ready_reason(status) == "RedirectRefused"
    summary = [{"id": "evil", "name": "evil", "status": "failed"}]
    assert wait_until(lambda: alice.get(REPOS).body["repositories"] == summary, TIMEOUT)
    seen_by_alice = alice.get("/api/v1/catalog/repositories")
    assert seen_by_alice.status == 200 and seen_by_alice.body["repositories"] == summary
    seen_by_olga = olga.get(REPOS).body["repositories"][0]
    assert "redirected" in seen_by_olga["message"]

    def events() -> list[tuple[str, str]]:
        items = objects.core.list_namespaced_event(namespace).items
        return [(e.reason, e.message) for e in items]

    assert wait_until(lambda: "RedirectRefused" in [reason for reason, _ in events()], TIMEOUT)
    everything = json.dumps([seen_by_alice.body, seen_by_olga, status]) + str(events())
    assert not any(part in everything for part in STOLEN)


def test_loopback_repositories_fail_where_private_networks_are_refused(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    with https_git_server({"t.git": git.path}, tmp_path, None, None) as server:
        url = product(SYNC_CA_BUNDLE=str(server.ca_bundle), ALLOW_PRIVATE_NETWORKS="false")
        objects.custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            "templaterepositories",
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TemplateRepository",
                "metadata": {"name": "inside"},
                "spec": {"url": f"{server.base_url}/t.git"},
            },
        )
        status = wait_failed(objects, "inside")
        assert server.requests == []
    assert ready_reason(status) == "AddressRefused"
    assert "ALLOW_PRIVATE_NETWORKS" in status["message"]
    # the facade refuses an address it can judge without resolving anything, at once
    olga = Client(url, token("olga", "operator"))
    for address in ("127.0.0.1", "169.254.169.254", "[fd00:ec2::254]", "10.0.0.1"):
        r = olga.post(REPOS, {"name": "meta", "url": f"https://{address}/t.git"})
        assert r.status == 422 and "url" in r.body["details"]["fields"], (address, r)


# --- item 2: Secrets that are not repository credentials --------------------------------------

SA_TOKEN = "eyJhbGciOiJSUzI1NiJ9.service-account-token-never-sent"
DB_PASSWORD = "database-password-never-sent"


def test_secrets_that_are_not_repository_credentials_are_never_sent(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    objects = Objects(api, namespace)
    core = objects.core
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "robot-token",
                "annotations": {"kubernetes.io/service-account.name": "robot"},
            },
            "type": "kubernetes.io/service-account-token",
            "stringData": {"token": SA_TOKEN},
        },
    )
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {
                "name": "database",
                "labels": {"app.kubernetes.io/managed-by": "streamspace"},
            },
            "stringData": {"username": "postgres", "password": DB_PASSWORD, "token": DB_PASSWORD},
        },
    )
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    with https_git_server({"t.git": git.path}, tmp_path, None, None) as server:
        url = product(SYNC_CA_BUNDLE=str(server.ca_bundle))
        olga = Client(url, token("olga", "operator"))
        for name, secret, auth in (
            ("steal-sa", "robot-token", "token"),
            ("steal-db", "database", "basic"),
        ):
            body = {"name": name, "url": f"{server.base_url}/t.git", "authType": auth}
            r = olga.post(REPOS, {**body, "authSecret": secret})
            assert r.status == 201, r
        statuses = [wait_failed(objects, name) for name in ("steal-sa", "steal-db")]
        assert server.requests == []  # not a single request, so no credential either
    for status in statuses:
        assert ready_reason(status) == "CredentialRefused"
        assert "not a repository credential" in status["message"]
        assert SA_TOKEN not in json.dumps(status) and DB_PASSWORD not in json.dumps(status)


def test_a_credential_is_not_sent_to_another_host(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    password = "host-a-password-never-sent-to-b"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        https_git_server({"t.git": git.path}, tmp_path / "a", "alice", password) as host_a,
        https_git_server({"t.git": git.path}, tmp_path / "b", None, None) as host_b,
    ):
        assert host_a.ca_bundle.read_bytes() != host_b.ca_bundle.read_bytes()
        bundle = tmp_path / "both.pem"
        bundle.write_bytes(host_a.ca_bundle.read_bytes() + host_b.ca_bundle.read_bytes())
        url = product(SYNC_CA_BUNDLE=str(bundle))
        olga = Client(url, token("olga", "operator"))
        r = olga.post(
            REPOS,
            {
                "name": "a",
                "url": f"{host_a.base_url}/t.git",
                "authType": "basic",
                "username": "alice",
                "password": password,
            },
        )
        assert r.status == 201, r
        assert wait_until(
            lambda: (repo(objects, "a").get("status") or {}).get("phase") == "Ready", TIMEOUT
        ), repo(objects, "a")
        assert repo(objects, "a")["status"]["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
        # the same Secret, named by a repository on host B (another port of the same machine)
        r = olga.post(
            REPOS,
            {
                "name": "b",
                "url": f"{host_b.base_url}/t.git",
                "authType": "basic",
                "authSecret": "a-auth",
            },
        )
        assert r.status == 201, r
        status = wait_failed(objects, "b")
        assert host_b.requests == []
    assert ready_reason(status) == "CredentialRefused"
    assert "bound to another host" in status["message"]


def test_hand_made_credentials_need_the_type_and_the_host(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The GitOps path: a Secret written with kubectl in the documented shape works."""
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    password = "gitops-password"
    with https_git_server({"t.git": git.path}, tmp_path, "alice", password) as server:
        repo_url = f"{server.base_url}/t.git"
        body = credential_secret(
            "gitops", repo_url, {"username": "alice", "password": password}, {}
        )
        objects.core.create_namespaced_secret(namespace, body)
        url = product(SYNC_CA_BUNDLE=str(server.ca_bundle))
        olga = Client(url, token("olga", "operator"))
        r = olga.post(
            REPOS, {"name": "gitops", "url": repo_url, "authType": "basic", "authSecret": "gitops"}
        )
        assert r.status == 201, r
        assert wait_until(
            lambda: (repo(objects, "gitops").get("status") or {}).get("phase") == "Ready", TIMEOUT
        ), repo(objects, "gitops")
        assert any(h.startswith("Basic ") for h in server.requests)


# --- item 11: deleting a repository deletes only the Secret it owns --------------------------


def test_a_foreign_secret_named_like_the_repository_survives_its_deletion(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    core = objects.core
    # someone else's Secret, named as ours would be, even of our type and bound to the host
    foreign = credential_secret("victim-auth", git.url, {"token": "foreign"}, {})
    core.create_namespaced_secret(namespace, foreign)
    for name in ("plain-auth", "squat-auth"):
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "stringData": {"token": "foreign"}}
        )
    url = product(ALLOW_LOCAL_REPOS="true")
    olga = Client(url, token("olga", "operator"))
    for name, secret in (("victim", "victim-auth"), ("plain", "plain-auth")):
        r = olga.post(
            REPOS, {"name": name, "url": git.url, "authType": "token", "authSecret": secret}
        )
        assert r.status == 201, r
    # and one whose Secret the API made: that one goes with it
    r = olga.post(REPOS, {"name": "own", "url": git.url, "authType": "token", "token": "mine"})
    assert r.status == 201, r
    assert core.read_namespaced_secret("own-auth", namespace) is not None
    # the API never writes over a foreign Secret: it refuses the repository instead
    r = olga.post(REPOS, {"name": "squat", "url": git.url, "authType": "token", "token": "x"})
    assert r.status == 409 and r.body["code"] == "CONFLICT", r
    assert objects.get("templaterepositories", "squat") is None
    for name in ("victim", "plain", "own"):
        assert olga.delete(f"{REPOS}/{name}").status == 204
    for name in ("victim-auth", "plain-auth", "squat-auth"):
        kept = core.read_namespaced_secret(name, namespace)
        assert kept is not None and kept.metadata.owner_references is None
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_secret("own-auth", namespace)
    assert gone.value.status == 404
