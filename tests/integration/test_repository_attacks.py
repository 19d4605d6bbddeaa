"""Attacks on repository sync (issue 13 items 1, 2 and 11), performed for real on loopback.

SSRF: a Git server that redirects to a plain-HTTP "metadata service", or to another host; a
repository on loopback while private networks are refused. Secret theft: repositories pointed at
a ServiceAccount-token-like Secret, a database Secret, and a credential made for another host.
Foreign Secrets: never used, written over nor deleted by the API, which only ever creates Secrets
(also run under a ServiceAccount allowed nothing else). Servers listen on 127.0.0.1 only;
the cases that need other addresses are in ``tests/unit/test_netguard.py`` (recording resolver).
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

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
from streamspace_testing import GROUP, Objects, service_account_kubeconfig

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
        objects.create("templaterepositories", "inside", {"url": f"{server.base_url}/t.git"})
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
        made_for_a = repo(objects, "a")["spec"]["auth"]["secretRef"]["name"]
        r = olga.post(
            REPOS,
            {
                "name": "b",
                "url": f"{host_b.base_url}/t.git",
                "authType": "basic",
                "authSecret": made_for_a,
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


# --- item 11, and issue 14: the facade only ever creates Secrets -------------------------------


def basic_passwords(headers: list[str]) -> set[str]:
    """The passwords sent in Basic Authorization headers."""
    decoded = (base64.b64decode(h.removeprefix("Basic ")).decode() for h in headers if h)
    return {pair.split(":", 1)[1] for pair in decoded}


def test_the_api_never_uses_writes_over_or_deletes_a_secret_it_did_not_make(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    objects = Objects(api, namespace)
    core = objects.core
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    password = "the-password-olga-gave"
    with https_git_server({"t.git": git.path}, tmp_path, "alice", password) as server:
        repo_url = f"{server.base_url}/t.git"
        # someone else's Secrets: one under the name the API used to give (<name>-auth), even of
        # our type and bound to the host; and two that repositories name through authSecret
        squatter = {"username": "alice", "password": "the-squatter-s-password"}
        core.create_namespaced_secret(
            namespace, credential_secret("own-auth", repo_url, squatter, {})
        )
        core.create_namespaced_secret(
            namespace, credential_secret("victim-auth", git.url, {"token": "foreign"}, {})
        )
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "plain-auth"}, "stringData": {"token": "foreign"}}
        )
        foreign = ("own-auth", "victim-auth", "plain-auth")
        before = {n: core.read_namespaced_secret(n, namespace).metadata for n in foreign}
        url = product(SYNC_CA_BUNDLE=str(server.ca_bundle), ALLOW_LOCAL_REPOS="true")
        olga = Client(url, token("olga", "operator"))
        for name, secret in (("victim", "victim-auth"), ("plain", "plain-auth")):
            r = olga.post(
                REPOS, {"name": name, "url": git.url, "authType": "token", "authSecret": secret}
            )
            assert r.status == 201 and r.body["authSecret"] == secret, r
        body = {"name": "own", "url": repo_url, "authType": "basic", **squatter}
        r = olga.post(REPOS, {**body, "password": password})
        assert r.status == 201, r
        # a Secret of the API server's naming, owned by the repository from its creation on
        made = r.body["authSecret"]
        assert made.startswith("own-auth-") and len(made) == len("own-auth-") + 5, r
        own = repo(objects, "own")
        assert own["spec"]["auth"] == {"type": "basic", "secretRef": {"name": made}}
        secret = core.read_namespaced_secret(made, namespace)
        owners = [
            (o.kind, o.name, o.uid, o.block_owner_deletion)
            for o in secret.metadata.owner_references
        ]
        assert owners == [("TemplateRepository", "own", own["metadata"]["uid"], None)]
        assert base64.b64decode(secret.data["password"]).decode() == password
        # synced with Olga's password, Ready without waiting for the sync interval
        assert wait_until(
            lambda: (repo(objects, "own").get("status") or {}).get("phase") == "Ready", TIMEOUT
        ), repo(objects, "own")
        assert basic_passwords(server.requests) == {password}
    for name in ("victim", "plain", "own"):
        assert olga.delete(f"{REPOS}/{name}").status == 204
    for name in foreign:  # not read into the repository, not written to, not deleted
        kept = core.read_namespaced_secret(name, namespace).metadata
        assert kept.resource_version == before[name].resource_version
        assert kept.owner_references is None
    # no owner reference, so the garbage collector leaves them too; it deletes the repository's
    # own Secret (no controller manager here: tests/e2e/test_api_catalog.py::
    # test_repositories_create_list_sync_and_delete)


def test_a_repository_whose_secret_cannot_be_made_is_taken_back(
    product: Callable[..., str], api: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """A ResourceQuota allowing no Secret: the API server refuses the credential Secret, so
    the repository made just before goes again, and the caller gets the error."""
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    none = {"secrets": "0"}
    objects.core.create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "no-secrets"}, "spec": {"hard": none}}
    )
    # what the quota controller would write (the minimal profile runs no controller manager);
    # admission judges by the status
    objects.core.patch_namespaced_resource_quota_status(
        "no-secrets", namespace, {"status": {"hard": none, "used": none}}
    )
    olga = Client(product(ALLOW_LOCAL_REPOS="true"), token("olga", "operator"))
    r = olga.post(REPOS, {"name": "refused", "url": git.url, "authType": "token", "token": "t"})
    assert r.status == 502 and r.body["code"] == "KUBERNETES_ERROR", r
    assert wait_until(lambda: repo(objects, "refused") == {}, TIMEOUT), repo(objects, "refused")
    assert olga.get(REPOS).body["repositories"] == []
    assert objects.core.list_namespaced_secret(namespace).items == []
    # the same name is free again once it has gone
    objects.core.delete_namespaced_resource_quota("no-secrets", namespace)
    r = olga.post(REPOS, {"name": "refused", "url": git.url, "authType": "token", "token": "t"})
    assert r.status == 201, r


FACADE_REPOSITORY_RULES = [
    # the mirror lists and watches these
    {
        "apiGroups": [GROUP],
        "resources": ["sessions", "connections", "plugins"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": [GROUP],
        "resources": ["templaterepositories"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    },
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
]


def test_a_facade_that_may_only_create_secrets_manages_repositories_with_credentials(
    cluster: Any,
    api: client.ApiClient,
    namespace: str,
    database: str,
    start_operator: Callable[..., Any],
    start_facade: Callable[..., Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The facade run with a token of a ServiceAccount whose Role has the rules above: a
    repository with credentials is created, syncs and is deleted with no 403 from the API
    server, and that account can read, change or delete no Secret."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "facade"}})
    rbac.create_namespaced_role(
        namespace, {"metadata": {"name": "facade"}, "rules": FACADE_REPOSITORY_RULES}
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "facade"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "facade"},
            "subjects": [{"kind": "ServiceAccount", "name": "facade", "namespace": namespace}],
        },
    )
    account = f"system:serviceaccount:{namespace}:facade"
    for verb in ("get", "list", "watch", "update", "patch", "delete", "deletecollection"):
        assert not allowed(api, account, namespace, verb, "secrets"), verb
    assert allowed(api, account, namespace, "create", "secrets")
    kubeconfig = service_account_kubeconfig(
        api, cluster.kubeconfig, namespace, "facade", tmp_path / "facade.kubeconfig"
    )
    objects = Objects(api, namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    password = "least-privilege-password"
    migrate(database)
    with https_git_server({"t.git": git.path}, tmp_path, "alice", password) as server:
        env = {"DATABASE_URL": database, "SYNC_CA_BUNDLE": str(server.ca_bundle)}
        start_operator(SYNC_WORK_DIR=str(tmp_path / "work"), **env)
        facade = start_facade(KUBECONFIG=str(kubeconfig), **env)
        olga = Client(facade.url, token("olga", "operator"))
        body = {"url": f"{server.base_url}/t.git", "authType": "basic", "username": "alice"}
        r = olga.post(REPOS, {**body, "name": "private", "password": password})
        assert r.status == 201, r
        assert wait_until(
            lambda: (repo(objects, "private").get("status") or {}).get("phase") == "Ready",
            TIMEOUT,
        ), repo(objects, "private")
    assert olga.post(f"{REPOS}/private/sync").status == 202
    r = olga.delete(f"{REPOS}/private")
    assert r.status == 204, r
    assert wait_until(lambda: repo(objects, "private") == {}, TIMEOUT)
    refused = [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith("streamspace_facade") and "403" in record.getMessage()
    ]
    assert refused == []
    # and the facade did act as that account: what its Role does not allow is refused
    template = {"name": "firefox", "displayName": "Firefox", "baseImage": "firefox:1"}
    r = olga.post("/api/v1/templates", template)
    assert r.status == 502 and r.body["code"] == "KUBERNETES_ERROR", r


def allowed(api: client.ApiClient, user: str, namespace: str, verb: str, resource: str) -> bool:
    """What ``kubectl auth can-i --as=<user>`` answers, asked as a SubjectAccessReview."""
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                "resourceAttributes": {"namespace": namespace, "verb": verb, "resource": resource},
            }
        }
    )
    return bool(review.status.allowed)
