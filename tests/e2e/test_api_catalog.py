"""Templates, the catalog, template repositories and the repository webhook through the REST API.

Each test runs the real facade and operator on a namespace of its own, against the shared
kube-apiserver and a fresh PostgreSQL database, with ``file://`` Git repositories made here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from psycopg.conninfo import make_conninfo

from facade_testing import WEBHOOK_SECRET, Client, FacadeThread, Response, token
from gitfixtures import PUBLIC_FORMAT, PUBLIC_FORMAT_TEMPLATES, make_repo, template_yaml
from streamspace.conditions import parse_timestamp
from streamspace_dev.process import wait_until
from streamspace_testing import GROUP, VERSION, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 60
REPOS = "/api/v1/repositories"
CATALOG_REPOS = "/api/v1/catalog/repositories"
CATALOG = "/api/v1/catalog/templates"
TEMPLATES = "/api/v1/templates"
WEBHOOK = "/webhooks/repository/sync"
SYNC_REQUESTED = "stream.space/sync-requested"
# Hosts that cannot resolve: these repositories fail to sync at once, which is all right here.
GITHUB_REPO = "https://git.example.invalid/example-org/templates"
GITLAB_REPO = "https://gitlab.example.invalid/group/sub/templates.git"

# A catalog entry whose description holds LIKE wildcards, to show they are searched literally.
PERCENT = """apiVersion: stream.space/v1alpha1
kind: Template
metadata: {name: percent}
spec:
  displayName: Percent Deals
  description: "100% pure_fun"
  category: Office
  appType: webapp
  baseImage: registry.example.org/percent:1
  tags: [office]
"""


# --- helpers ----------------------------------------------------------------------------------


def repository(objects: Objects, name: str) -> dict[str, Any] | None:
    return objects.get("templaterepositories", name)


def annotation(objects: Objects, name: str) -> str | None:
    obj = repository(objects, name) or {}
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(SYNC_REQUESTED)


def mark(objects: Objects, name: str, value: str) -> None:
    """Set the sync annotation to a known value, so that a later change (or none) shows."""
    objects.custom.patch_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "templaterepositories", name,
        {"metadata": {"annotations": {SYNC_REQUESTED: value}}},
    )  # fmt: skip


def assert_sync_requested(objects: Objects, name: str, previous: str | None) -> None:
    value = annotation(objects, name)
    assert value is not None and value != previous, (name, value)
    assert parse_timestamp(value) is not None


def handled(objects: Objects, name: str, value: str | None) -> bool:
    """Whether the operator finished handling the sync request ``value`` (Kopf records what it
    handled last, annotations included, once every handler succeeded)."""
    annotations = ((repository(objects, name) or {}).get("metadata") or {}).get("annotations")
    last = (annotations or {}).get("operator.stream.space/last-handled-configuration", "")
    return value is not None and value in last


def listed(caller: Client, path: str = REPOS) -> dict[str, dict[str, Any]]:
    r = caller.get(path)
    assert r.status == 200, r
    assert r.body["total"] == len(r.body["repositories"]), r
    return {item["name"]: item for item in r.body["repositories"]}


def wait_listed(
    caller: Client, name: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    assert wait_until(lambda: name in listed(caller) and done(listed(caller)[name]), TIMEOUT), (
        listed(caller).get(name)
    )
    return listed(caller)[name]


def secret(objects: Objects, name: str) -> Any | None:
    try:
        return objects.core.read_namespaced_secret(name, objects.ns)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def audit_rows(database_url: str) -> list[tuple[str | None, str, str, str | None, Any]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT user_id, action, resource_type, resource_id, changes FROM audit_log ORDER BY id"
        ).fetchall()


def field_errors(r: Response) -> dict[str, str]:
    assert r.status == 422, r
    assert r.body["code"] == "VALIDATION_FAILED", r
    fields: dict[str, str] = r.body["details"]["fields"]
    return fields


def assert_error(r: Response, status: int, code: str) -> None:
    assert r.status == status, r
    assert r.body["code"] == code and r.body["error"], r


# --- repositories -----------------------------------------------------------------------------


def test_repositories_create_list_sync_and_delete(
    full_cluster: Any, stack: Any, api: client.ApiClient, tmp_path: Path
) -> None:
    """The full profile: its garbage collector deletes a deleted repository's Secret."""
    objects = Objects(api, stack.namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    ops = stack.client("olivia", "operator")
    user = stack.client("ulrich")

    r = ops.post(REPOS, {"name": "public", "url": git.url, "branch": "main"})
    assert r.status == 201, r
    assert r.body["id"] == "public" and r.body["name"] == "public", r
    assert r.body["namespace"] == stack.namespace
    assert (r.body["url"], r.body["branch"], r.body["type"]) == (git.url, "main", "template")
    assert (r.body["authType"], r.body["autoInstall"], r.body["suspend"]) == ("none", False, False)
    assert {"lastSyncCommit", "templateCount", "pluginCount", "syncInterval", "createdAt"} <= set(
        r.body
    )
    assert not [key for key in r.body if "_" in key], r  # camelCase
    cr = repository(objects, "public")
    assert cr is not None
    assert cr["spec"]["url"] == git.url and cr["spec"]["branch"] == "main"
    assert "auth" not in cr["spec"]

    # read-your-writes on both paths, then the sync result
    for path in (REPOS, CATALOG_REPOS):
        assert listed(ops, path)["public"]["url"] == git.url
    row = wait_listed(ops, "public", lambda row: row["status"] == "synced")
    assert row["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES)
    assert row["lastSyncCommit"] == git.head() and row["lastSync"] is not None
    assert listed(ops, CATALOG_REPOS)["public"] == row

    # a plain user may look, but not change anything
    assert listed(user)["public"]["status"] == "synced"
    assert_error(user.post(REPOS, {"name": "mine", "url": git.url}), 403, "FORBIDDEN")
    assert_error(user.post(f"{REPOS}/public/sync"), 403, "FORBIDDEN")
    assert_error(user.delete(f"{REPOS}/public"), 403, "FORBIDDEN")
    assert_error(user.delete(f"{CATALOG_REPOS}/public"), 403, "FORBIDDEN")
    assert repository(objects, "mine") is None
    assert repository(objects, "public") is not None
    assert annotation(objects, "public") is None

    # credentials go to a Secret the API server names, owned by the repository, and nowhere else
    token = f"s3cret-{uuid.uuid4().hex}"
    r = ops.post(
        CATALOG_REPOS, {"name": "private", "url": git.url, "authType": "token", "token": token}
    )
    assert r.status == 201, r
    assert r.body["authType"] == "token" and token not in json.dumps(r.body)
    made = r.body["authSecret"]
    assert made.startswith("private-auth-"), r
    private = repository(objects, "private")
    assert private is not None
    assert private["spec"]["auth"] == {"type": "token", "secretRef": {"name": made}}
    stored = secret(objects, made)
    assert stored is not None
    assert base64.b64decode(stored.data["token"]).decode() == token
    owners = [(o.kind, o.name, o.uid) for o in stored.metadata.owner_references or []]
    assert owners == [("TemplateRepository", "private", private["metadata"]["uid"])]

    # duplicates: refused before any Secret is made; the existing one keeps its token
    assert_error(ops.post(REPOS, {"name": "public", "url": git.url}), 409, "CONFLICT")
    again = {"name": "private", "url": git.url, "authType": "token", "token": "other-token"}
    assert_error(ops.post(REPOS, again), 409, "CONFLICT")
    assert [s.metadata.name for s in objects.core.list_namespaced_secret(objects.ns).items] == [
        made
    ]
    stored = secret(objects, made)
    assert stored is not None and base64.b64decode(stored.data["token"]).decode() == token

    # validation: 422 naming the field, nothing created, no secret echoed
    https = "https://github.com/example-org/templates"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"branch": "main"}, "url"),
        ({"url": "http://github.com/example-org/templates"}, "url"),
        ({"url": "https://bob:hunter2-pass@github.com/example-org/templates"}, "url"),
        ({"url": https, "name": "Bad_Name"}, "name"),
        ({"url": https, "colour": "blue"}, "colour"),
        ({"url": https, "authType": "token"}, "authType"),
        ({"url": https, "authType": "token", "username": "bob"}, "authType"),
    ]
    for body, field in cases:
        r = ops.post(REPOS, body)
        assert field in field_errors(r), (body, r)
        assert "hunter2-pass" not in json.dumps(r.body)
    items = objects.custom.list_namespaced_custom_object(
        GROUP, VERSION, objects.ns, "templaterepositories"
    )["items"]
    assert sorted(i["metadata"]["name"] for i in items) == ["private", "public"]

    # the token repository's sync has finished, and still nothing shows the token
    wait_listed(ops, "private", lambda row: row["status"] in ("synced", "failed"))
    for path in (REPOS, CATALOG_REPOS):
        for caller in (ops, user):
            r = caller.get(path)
            assert r.status == 200 and token not in json.dumps(r.body), r
    rows = audit_rows(stack.database_url)
    assert not [row for row in rows if token in json.dumps(row[4])]
    created = [r[4] for r in rows if r[1:4] == ("create", "repository", "private")]
    assert created and created[0]["credentials"] == ["token"] and created[0]["status"] == 201

    # an on-demand sync picks up a new commit
    head = git.commit({"extra/xterm.yaml": template_yaml("xterm", "XTerm")}, message="add xterm")
    assert_error(ops.post(f"{REPOS}/nope/sync"), 404, "NOT_FOUND")
    r = ops.post(f"{REPOS}/public/sync")
    assert r.status == 202 and r.body == {"repositories": ["public"], "total": 1}, r
    assert_sync_requested(objects, "public", None)
    row = wait_listed(ops, "public", lambda row: row["lastSyncCommit"] == head)
    assert row["status"] == "synced"
    assert row["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES) + 1
    # "private" reads the same Git URL: its own next sync (a retry, the interval) may list xterm
    # too, so count only the entries that came from "public"
    found = ops.get(f"{CATALOG}?search=xterm").body["templates"]
    assert [t["name"] for t in found if t["repository"]["id"] == "public"] == ["xterm"], found

    # delete: the row goes at once, the object and, by garbage collection, the Secret with it
    r = ops.delete(f"{REPOS}/private")
    assert r.status == 204, r
    assert "private" not in listed(ops) and "private" not in listed(ops, CATALOG_REPOS)
    assert wait_until(lambda: secret(objects, made) is None, TIMEOUT), secret(objects, made)
    r = ops.delete(f"{CATALOG_REPOS}/public")
    assert r.status == 204, r
    assert listed(ops) == {} and listed(user, CATALOG_REPOS) == {}
    assert ops.get(CATALOG).body["total"] == 0
    assert wait_until(
        lambda: repository(objects, "private") is None and repository(objects, "public") is None,
        TIMEOUT,
    )
    assert_error(ops.delete(f"{REPOS}/public"), 404, "NOT_FOUND")
    assert_error(ops.delete(f"{CATALOG_REPOS}/never-was"), 404, "NOT_FOUND")
    deleted = [r[3] for r in audit_rows(stack.database_url) if r[1:3] == ("delete", "repository")]
    assert deleted == ["private", "public"]


# --- catalog ----------------------------------------------------------------------------------


def test_catalog_filters_pages_installs_and_syncs(
    stack: Any, api: client.ApiClient, tmp_path: Path
) -> None:
    objects = Objects(api, stack.namespace)
    git = make_repo(tmp_path / "templates", {**PUBLIC_FORMAT, "office/percent.yaml": PERCENT})
    ops = stack.client("olivia", "operator")
    user = stack.client("ulrich")
    everything = PUBLIC_FORMAT_TEMPLATES | {"percent"}
    assert ops.post(REPOS, {"name": "public", "url": git.url}).status == 201
    wait_listed(ops, "public", lambda row: row["status"] == "synced")

    def catalog(**query: Any) -> Response:
        return user.get(f"{CATALOG}?{urlencode(query)}" if query else CATALOG)

    def names(**query: Any) -> set[str]:
        r = catalog(**query)
        assert r.status == 200, r
        assert r.body["total"] == len(r.body["templates"]), r
        return {t["name"] for t in r.body["templates"]}

    r = catalog()
    assert r.status == 200, r
    assert set(r.body) == {"templates", "total", "page", "limit", "continue"}
    assert (r.body["total"], r.body["page"], r.body["limit"]) == (len(everything), 1, 20)
    entries = {t["name"]: t for t in r.body["templates"]}
    assert set(entries) == everything
    firefox = entries["firefox"]
    assert firefox["displayName"] == "Firefox" and firefox["category"] == "Testing"
    assert firefox["appType"] == "desktop" and firefox["tags"] == ["firefox", "test"]
    assert firefox["baseImage"] == "lscr.io/linuxserver/firefox:latest"
    assert firefox["sourcePath"] == "browsers/firefox.yaml" and firefox["installCount"] == 0
    assert firefox["repository"] == {"id": "public", "url": git.url}
    assert entries["vscode"]["appType"] == "webapp"

    # filters
    testing = {"firefox", "chromium", "gimp", "pair-a", "pair-b"}
    assert names(category="Testing") == testing
    assert names(category="testing") == set()
    assert names(tag="firefox") == {"firefox"}
    assert names(tag="test") == testing
    assert names(search="fIrEfOx") == {"firefox"}
    assert names(search="VS CODE") == {"vscode"}
    assert names(search="%") == {"percent"}  # literal, not "anything"
    assert names(search="_") == {"percent"}
    assert names(search="0% pure_fun") == {"percent"}
    assert names(search="pure-fun") == set()
    assert names(appType="webapp") == {"vscode", "percent"}
    assert names(appType="desktop") == testing
    assert names(category="Testing", search="pair") == {"pair-a", "pair-b"}

    # paging: the next items, the same total
    full = [t["name"] for t in catalog(limit=100).body["templates"]]
    assert set(full) == everything
    for page, expected in ((1, full[:2]), (2, full[2:4]), (4, full[6:]), (5, [])):
        r = catalog(limit=2, page=page)
        assert r.status == 200, r
        assert [t["name"] for t in r.body["templates"]] == expected, (page, r)
        assert (r.body["total"], r.body["page"], r.body["limit"]) == (len(everything), page, 2)
    bad = [
        ({"page": 0}, "query.page"),
        ({"page": "two"}, "query.page"),
        ({"limit": 0}, "query.limit"),
        ({"limit": 101}, "query.limit"),
        ({"limit": "x"}, "query.limit"),
        ({"appType": "mobile"}, "query.appType"),
    ]
    for query, field in bad:
        assert field in field_errors(catalog(**query)), query

    # install: a Template made from the manifest, counted once
    install = f"{CATALOG}/{firefox['id']}/install"
    assert_error(user.post(install), 403, "FORBIDDEN")
    assert objects.get("templates", "firefox") is None
    r = ops.post(install)
    assert r.status == 201, r
    assert r.body["id"] == "firefox" and r.body["baseImage"] == firefox["baseImage"], r
    template = objects.get("templates", "firefox")
    assert template is not None
    spec = template["spec"]
    assert spec["baseImage"] == "lscr.io/linuxserver/firefox:latest"
    assert spec["displayName"] == "Firefox" and spec["category"] == "Testing"
    assert spec["vnc"] == {"enabled": True, "port": 3000} and "kasmvnc" not in spec
    assert template["metadata"]["labels"]["stream.space/catalog-repository"] == "public"
    assert names(search="Firefox") == {"firefox"}
    assert catalog(search="Firefox").body["templates"][0]["installCount"] == 1
    assert user.get(f"{TEMPLATES}/firefox").status == 200
    assert_error(ops.post(install), 409, "CONFLICT")
    assert catalog(search="Firefox").body["templates"][0]["installCount"] == 1
    assert_error(ops.post(f"{CATALOG}/999999999/install"), 404, "NOT_FOUND")
    assert_error(ops.post(f"{CATALOG}/abc/install"), 404, "NOT_FOUND")
    assert_error(ops.post(f"{CATALOG}/-1/install"), 404, "NOT_FOUND")

    # sync everything not suspended
    assert ops.post(REPOS, {"name": "mirror", "url": GITHUB_REPO}).status == 201
    assert ops.post(REPOS, {"name": "paused", "url": GITLAB_REPO, "suspend": True}).status == 201
    assert [annotation(objects, n) for n in ("public", "mirror", "paused")] == [None] * 3
    assert_error(user.post("/api/v1/catalog/sync"), 403, "FORBIDDEN")
    assert annotation(objects, "public") is None
    head = git.commit({"extra/xterm.yaml": template_yaml("xterm", "XTerm")}, message="add xterm")
    r = ops.post("/api/v1/catalog/sync")
    assert r.status == 202 and r.body == {"repositories": ["mirror", "public"], "total": 2}, r
    assert_sync_requested(objects, "public", None)
    assert_sync_requested(objects, "mirror", None)
    assert annotation(objects, "paused") is None
    wait_listed(ops, "public", lambda row: row["lastSyncCommit"] == head)
    assert names(search="xterm") == {"xterm"}
    assert catalog().body["total"] == len(everything) + 1
    # the re-sync kept every entry's id and the install count (upsert by repository and name)
    after = {t["name"]: t for t in catalog(limit=100).body["templates"]}
    assert {n: after[n]["id"] for n in everything} == {n: entries[n]["id"] for n in everything}
    assert after["firefox"]["installCount"] == 1


def test_catalog_lists_never_read_a_manifest(
    stack: Any, tmp_path: Path, start_facade: Callable[..., FacadeThread]
) -> None:
    """A facade whose database role may read every catalog column but ``manifest`` lists the
    catalog as usual: no list can pull the (potentially large) manifests, only an install."""
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    ops = stack.client("olivia", "operator")
    assert ops.post(REPOS, {"name": "public", "url": git.url}).status == 201
    wait_listed(ops, "public", lambda row: row["status"] == "synced")
    role, password = f"no_manifest_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        columns = [
            name
            for (name,) in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'catalog_templates' AND column_name <> 'manifest'"
            ).fetchall()
        ]
        for statement in (
            f"CREATE ROLE {role} LOGIN PASSWORD '{password}'",
            f"GRANT CREATE, USAGE ON SCHEMA public TO {role}",
            f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {role}",
            f"GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"REVOKE SELECT ON catalog_templates FROM {role}",  # noqa: S608 - our own name
            f"GRANT SELECT ({', '.join(columns)}) ON catalog_templates TO {role}",
        ):
            conn.execute(statement)  # type: ignore[arg-type]
    try:
        limited = start_facade(
            DATABASE_URL=make_conninfo(stack.database_url, user=role, password=password)
        )
        reader = Client(limited.url, token("ulrich"))
        for query in ("", "?limit=100", "?category=Testing&page=2&limit=2", "?search=fox"):
            r = reader.get(CATALOG + query)
            assert r.status == 200 and r.body["total"] > 0, (query, r)
        first = reader.get(CATALOG).body["templates"][0]
        # ... and the install path is the one that reads it (this role may not).
        with psycopg.connect(stack.database_url) as conn, pytest.raises(psycopg.Error):
            conn.execute(f"SET ROLE {role}")  # type: ignore[arg-type]
            conn.execute("SELECT manifest FROM catalog_templates WHERE id = %s", (first["id"],))
        limited.stop()
    finally:
        with psycopg.connect(stack.database_url, autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")  # type: ignore[arg-type]
            conn.execute(f"DROP ROLE {role}")  # type: ignore[arg-type]


# --- templates --------------------------------------------------------------------------------


def test_templates_create_list_get_and_delete(stack: Any, api: client.ApiClient) -> None:
    objects = Objects(api, stack.namespace)
    ops = stack.client("olivia", "operator")
    user = stack.client("ulrich")
    image = "lscr.io/linuxserver/firefox:latest"

    flat = {
        "name": "firefox",
        "displayName": "Firefox",
        "baseImage": image,
        "category": "Browsers",
        "vnc": {"enabled": True, "port": 3000},
    }
    r = ops.post(TEMPLATES, flat)
    assert r.status == 201, r
    assert (r.body["id"], r.body["baseImage"], r.body["category"]) == ("firefox", image, "Browsers")
    nested = {
        "name": "editor",
        "spec": {
            "displayName": "Editor",
            "baseImage": "lscr.io/linuxserver/code-server:latest",
            "category": "Development",
            "appType": "webapp",
            "webapp": {"enabled": True, "port": 8443, "path": "/"},
        },
    }
    r = ops.post(TEMPLATES, nested)
    assert r.status == 201, r
    assert r.body["id"] == "editor" and r.body["appType"] == "webapp", r
    firefox, editor = objects.get("templates", "firefox"), objects.get("templates", "editor")
    assert firefox is not None and editor is not None
    assert firefox["spec"] == {k: v for k, v in flat.items() if k != "name"}
    assert editor["spec"] == nested["spec"]

    # reading needs only a login
    assert_error(Client(stack.url).get(TEMPLATES), 401, "UNAUTHORIZED")
    r = user.get(TEMPLATES)
    assert r.status == 200, r
    assert r.body["total"] == 2 and [t["id"] for t in r.body["templates"]] == ["editor", "firefox"]
    r = user.get(f"{TEMPLATES}?category=Browsers")
    assert r.status == 200 and [t["id"] for t in r.body["templates"]] == ["firefox"], r
    assert r.body["total"] == 1
    r = user.get(f"{TEMPLATES}?category=Nothing")
    assert r.status == 200, r
    assert r.body == {"templates": [], "total": 0, "limit": 100, "continue": None}, r
    r = user.get(f"{TEMPLATES}/editor")
    assert r.status == 200, r
    assert r.body["displayName"] == "Editor" and r.body["namespace"] == stack.namespace
    assert_error(user.get(f"{TEMPLATES}/nope"), 404, "NOT_FOUND")

    # the API server's validation, with its field paths
    invalid: list[tuple[dict[str, Any], str]] = [
        ({"name": "broken", "displayName": "Broken"}, "spec.baseImage"),
        ({"name": "odd", "spec": {"baseImage": "x:1", "appType": "mobile"}}, "spec.appType"),
        ({"name": "Bad_Name", "baseImage": "x:1"}, "name"),
        ({"name": "extra", "spec": {"baseImage": "x:1"}, "colour": "blue"}, "colour"),
    ]
    for body, field in invalid:
        assert field in field_errors(ops.post(TEMPLATES, body)), body
    for name in ("broken", "odd", "extra"):
        assert objects.get("templates", name) is None

    # writing needs the operator role
    assert_error(user.post(TEMPLATES, {"name": "mine", "baseImage": image}), 403, "FORBIDDEN")
    assert_error(user.delete(f"{TEMPLATES}/firefox"), 403, "FORBIDDEN")
    assert objects.get("templates", "mine") is None
    assert objects.get("templates", "firefox") is not None

    r = ops.delete(f"{TEMPLATES}/firefox")
    assert r.status == 204, r
    assert wait_until(lambda: objects.get("templates", "firefox") is None, TIMEOUT)
    assert_error(user.get(f"{TEMPLATES}/firefox"), 404, "NOT_FOUND")
    assert [t["id"] for t in user.get(TEMPLATES).body["templates"]] == ["editor"]
    assert_error(ops.delete(f"{TEMPLATES}/firefox"), 404, "NOT_FOUND")

    done = [
        (r[1], r[3])
        for r in audit_rows(stack.database_url)
        if r[2] == "template" and r[4]["status"] < 300
    ]
    assert done == [("create", "firefox"), ("create", "editor"), ("delete", "firefox")]
    assert all(r[0] == "olivia" for r in audit_rows(stack.database_url) if r[2] == "template")


# --- webhook ----------------------------------------------------------------------------------


def hub_signature(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_push(clone_url: str, ref: str = "refs/heads/main") -> bytes:
    """A push event as GitHub sends it (the fields we read, and some we do not)."""
    after = hashlib.sha1(uuid.uuid4().bytes).hexdigest()  # noqa: S324 - a fake commit id
    html = clone_url.removesuffix(".git")
    host, path = html.split("://", 1)[1].split("/", 1)
    payload = {
        "ref": ref,
        "before": "a" * 40,
        "after": after,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"{html}/compare/aaaaaaaaaaaa...{after[:12]}",
        "commits": [{"id": after, "message": "Update templates", "distinct": True}],
        "head_commit": {"id": after, "message": "Update templates"},
        "repository": {
            "id": 123456,
            "name": path.rsplit("/", 1)[-1],
            "full_name": path,
            "private": False,
            "html_url": html,
            "clone_url": clone_url,
            "git_url": f"git://{host}/{path}.git",
            "ssh_url": f"git@{host}:{path}.git",
            "default_branch": "main",
        },
        "pusher": {"name": "octocat", "email": "octocat@example.org"},
        "sender": {"login": "octocat", "id": 1},
    }
    return json.dumps(payload).encode()


def github_headers(body: bytes, delivery: str, event: str = "push") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-GitHub-Hook-ID": "42",
        "X-Hub-Signature-256": hub_signature(body),
        "User-Agent": "GitHub-Hookshot/abc123",
    }


def standard_headers(
    body: bytes, *, delivery: str | None = None, age: int = 0, secret: str = WEBHOOK_SECRET
) -> dict[str, str]:
    """A generic delivery signed as Standard Webhooks senders sign it, ``age`` seconds old."""
    delivery = delivery or f"msg_{uuid.uuid4().hex}"
    stamp = str(int(time.time()) - age)
    signed = f"{delivery}.{stamp}.".encode() + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "webhook-id": delivery,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def gitlab_push(http_url: str) -> bytes:
    after = hashlib.sha1(uuid.uuid4().bytes).hexdigest()  # noqa: S324 - a fake commit id
    web = http_url.removesuffix(".git")
    host, path = web.split("://", 1)[1].split("/", 1)
    payload = {
        "object_kind": "push",
        "event_name": "push",
        "before": "b" * 40,
        "after": after,
        "ref": "refs/heads/main",
        "checkout_sha": after,
        "user_username": "jsmith",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "templates",
            "path_with_namespace": path,
            "web_url": web,
            "git_http_url": http_url,
            "git_ssh_url": f"git@{host}:{path}.git",
            "default_branch": "main",
        },
        "repository": {"name": "templates", "url": f"git@{host}:{path}.git", "homepage": web},
        "commits": [{"id": after, "message": "Update templates"}],
        "total_commits_count": 1,
    }
    return json.dumps(payload).encode()


def test_webhook_deliveries_request_syncs_of_matching_repositories(
    stack: Any, api: client.ApiClient, tmp_path: Path, start_facade: Callable[..., FacadeThread]
) -> None:
    objects = Objects(api, stack.namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    ops = stack.client("olivia", "operator")
    hook = Client(stack.url)  # webhooks carry no bearer token
    for name, url in (("github", GITHUB_REPO), ("gitlab", GITLAB_REPO), ("local", git.url)):
        assert ops.post(REPOS, {"name": name, "url": url, "branch": "main"}).status == 201
    names = ("github", "gitlab", "local")
    counter = iter(range(1000))
    # "local" keeps no annotation until its sync by webhook has been seen: marking it would sync
    # it, and that sync could pick up the new commit before the webhook asks for one.
    marked = ["github", "gitlab"]

    def reset() -> dict[str, str | None]:
        """Known annotation values to compare against after the next delivery (sync requests
        in the same second would otherwise set the same value)."""
        values: dict[str, str | None] = {name: annotation(objects, name) for name in names}
        for name in marked:
            values[name] = f"before-{next(counter)}"
            mark(objects, name, values[name])
        return values

    def unchanged(before: dict[str, str | None], *except_for: str) -> None:
        for name in names:
            if name not in except_for:
                assert annotation(objects, name) == before[name], name

    # GitHub: a signed push for main of the repository (any spelling of its URL)
    body = github_push("https://git.example.invalid/Example-Org/templates.git")
    delivery = str(uuid.uuid4())
    before = reset()
    r = hook.post(WEBHOOK, raw=body, headers=github_headers(body, delivery))
    assert r.status == 202, r
    assert r.body == {
        "status": "accepted",
        "repositories": ["github"],
        "total": 1,
        "deferred": [],
    }, r
    assert_sync_requested(objects, "github", before["github"])
    unchanged(before, "github")

    # the same delivery again: acknowledged, nothing requested
    before = reset()
    r = hook.post(WEBHOOK, raw=body, headers=github_headers(body, delivery))
    assert 200 <= r.status < 300 and r.body["status"] == "duplicate", r
    unchanged(before)

    # bad signatures: 401 before anything happens
    fresh = str(uuid.uuid4())
    refused = [
        {**github_headers(body, fresh), "X-Hub-Signature-256": hub_signature(body, "wrong")},
        {k: v for k, v in github_headers(body, fresh).items() if k != "X-Hub-Signature-256"},
        {**github_headers(body, fresh), "X-Hub-Signature-256": hub_signature(body)[7:]},
    ]
    for headers in refused:
        assert_error(hook.post(WEBHOOK, raw=body, headers=headers), 401, "UNAUTHORIZED")
    tampered = body.replace(b"refs/heads/main", b"refs/heads/evil")
    r = hook.post(WEBHOOK, raw=tampered, headers=github_headers(body, fresh))
    assert_error(r, 401, "UNAUTHORIZED")
    unchanged(before)
    # ... and the refused delivery id was not used up
    r = hook.post(WEBHOOK, raw=body, headers=github_headers(body, fresh))
    assert r.status == 202 and r.body["repositories"] == ["github"], r
    assert_sync_requested(objects, "github", before["github"])

    # not a push of a tracked branch: acknowledged, nothing requested
    before = reset()
    ping = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 42}).encode()
    r = hook.post(WEBHOOK, raw=ping, headers=github_headers(ping, str(uuid.uuid4()), "ping"))
    assert 200 <= r.status < 300 and r.body["status"] == "ignored", r
    other = github_push(GITHUB_REPO + ".git", ref="refs/heads/dev")
    r = hook.post(WEBHOOK, raw=other, headers=github_headers(other, str(uuid.uuid4())))
    assert r.status == 202, r
    assert r.body == {"status": "accepted", "repositories": [], "total": 0, "deferred": []}, r
    unchanged(before)

    # GitLab: the token header
    before = reset()
    body = gitlab_push(GITLAB_REPO)
    headers = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    r = hook.post(WEBHOOK, raw=body, headers={**headers, "X-Gitlab-Token": "wrong"})
    assert_error(r, 401, "UNAUTHORIZED")
    unchanged(before)
    r = hook.post(WEBHOOK, raw=body, headers={**headers, "X-Gitlab-Token": WEBHOOK_SECRET})
    assert r.status == 202 and r.body["repositories"] == ["gitlab"], r
    assert_sync_requested(objects, "gitlab", before["gitlab"])
    unchanged(before, "gitlab")

    # generic: Standard Webhooks headers; the local repository really syncs the new commit
    wait_listed(ops, "local", lambda row: row["status"] == "synced")
    head = git.commit({"extra/xterm.yaml": template_yaml("xterm", "XTerm")}, message="add xterm")
    before = reset()
    body = json.dumps(
        {"repository_url": git.url, "branch": "main", "ref": "refs/heads/main"}
    ).encode()
    assert_error(hook.post(WEBHOOK, raw=body), 401, "UNAUTHORIZED")
    bad = standard_headers(body, secret="wrong")
    assert_error(hook.post(WEBHOOK, raw=body, headers=bad), 401, "UNAUTHORIZED")
    # the old body-only hex signature is refused, right or not, and says what to use instead
    legacy = {"X-Webhook-Signature": hub_signature(body)[7:]}
    r = hook.post(WEBHOOK, raw=body, headers=legacy)
    assert_error(r, 401, "UNAUTHORIZED")
    assert "webhook-signature" in r.body["error"], r
    unchanged(before)
    signed = standard_headers(body)
    r = hook.post(WEBHOOK, raw=body, headers=signed)
    assert r.status == 202 and r.body["repositories"] == ["local"], r
    assert_sync_requested(objects, "local", before["local"])
    unchanged(before, "local")
    row = wait_listed(ops, "local", lambda row: row["lastSyncCommit"] == head)
    assert row["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES) + 1
    marked.append("local")

    # malformed JSON, correctly signed
    before = reset()
    for raw in (b'{"repository_url": ', b"[1, 2]", b"\xff\xfe"):
        r = hook.post(WEBHOOK, raw=raw, headers=standard_headers(raw))
        assert_error(r, 400, "BAD_REQUEST")
    raw = b'{"ref": "refs/heads/main", "repository": '
    r = hook.post(WEBHOOK, raw=raw, headers=github_headers(raw, str(uuid.uuid4())))
    assert_error(r, 400, "BAD_REQUEST")
    unchanged(before)

    # without a secret: refused unless unsigned deliveries are explicitly allowed
    closed = start_facade(DATABASE_URL=stack.database_url, WEBHOOK_SECRET="")
    assert_error(Client(closed.url).post(WEBHOOK, raw=body), 401, "UNAUTHORIZED")
    unchanged(before)
    open_ = start_facade(
        DATABASE_URL=stack.database_url, WEBHOOK_SECRET="", WEBHOOK_ALLOW_UNSIGNED="true"
    )
    r = Client(open_.url).post(WEBHOOK, raw=body)
    assert r.status == 202 and r.body["repositories"] == ["local"], r
    assert_sync_requested(objects, "local", before["local"])

    # one audit row per accepted delivery
    webhooks = [
        (r[0], r[3], r[4]["provider"], r[4]["repositories"], r[4]["status"])
        for r in audit_rows(stack.database_url)
        if r[1] == "webhook"
    ]
    assert webhooks == [
        (None, "github", "github", ["github"], 202),
        (None, "github", "github", ["github"], 202),
        (None, None, "github", [], 202),
        (None, "gitlab", "gitlab", ["gitlab"], 202),
        (None, "local", "generic", ["local"], 202),
        (None, "local", "generic", ["local"], 202),
    ]


def test_webhook_replays_stale_deliveries_missing_ids_and_bursts(
    stack: Any, api: client.ApiClient, tmp_path: Path, start_facade: Callable[..., FacadeThread]
) -> None:
    """Replay, a stale timestamp and a missing GitHub delivery id are refused; a burst of valid
    deliveries makes one (deferred) sync request, and the last push is synced all the same."""
    objects = Objects(api, stack.namespace)
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    ops = stack.client("olivia", "operator")
    # A long interval, so the burst below surely falls within it however slow this machine is
    # (the operator waits no longer than its own interval, 10 s, for the deferred sync).
    interval = timedelta(minutes=1)
    hook = Client(start_facade(DATABASE_URL=stack.database_url, SYNC_REQUEST_INTERVAL="1m").url)
    assert ops.post(REPOS, {"name": "local", "url": git.url}).status == 201
    assert ops.post(REPOS, {"name": "hub", "url": GITHUB_REPO}).status == 201
    wait_listed(ops, "local", lambda row: row["status"] == "synced")
    body = json.dumps({"repository_url": git.url, "branch": "main"}).encode()

    # a signed delivery: a sync at once
    headers = standard_headers(body)
    r = hook.post(WEBHOOK, raw=body, headers=headers)
    assert r.status == 202 and r.body["repositories"] == ["local"], r
    assert r.body["deferred"] == [], r
    requested = annotation(objects, "local")
    assert_sync_requested(objects, "local", None)
    # that sync is over before the push below: only the deferred one can pick the push up
    assert wait_until(lambda: handled(objects, "local", requested), TIMEOUT)

    # the same delivery again (within the tolerance window): acknowledged, nothing requested
    r = hook.post(WEBHOOK, raw=body, headers=headers)
    assert 200 <= r.status < 300 and r.body["status"] == "duplicate", r
    # a captured delivery replayed later (a new id cannot be signed without the secret, so the
    # replay keeps its old timestamp): refused
    for age in (301, 3600):
        stale = standard_headers(body, age=age)
        assert_error(hook.post(WEBHOOK, raw=body, headers=stale), 401, "UNAUTHORIZED")
    assert annotation(objects, "local") == requested

    # GitHub without its delivery id (which it does not sign): refused, not de-duplication-free
    push = github_push(GITHUB_REPO + ".git")
    no_id = {k: v for k, v in github_headers(push, "x").items() if k != "X-GitHub-Delivery"}
    r = hook.post(WEBHOOK, raw=push, headers=no_id)
    assert_error(r, 400, "BAD_REQUEST")
    assert "X-GitHub-Delivery" in r.body["error"], r
    assert annotation(objects, "hub") is None

    # a burst of valid, distinct deliveries after a push: one request, for later, and that
    # sync picks up the pushed commit
    head = git.commit({"extra/xterm.yaml": template_yaml("xterm", "XTerm")}, message="xterm")
    seen = set()
    for _ in range(20):
        r = hook.post(WEBHOOK, raw=body, headers=standard_headers(body))
        assert r.status == 202 and r.body["deferred"] == ["local"], r
        seen.add(annotation(objects, "local"))
    assert len(seen) == 1 and requested not in seen, seen  # one write for the whole burst
    (scheduled,) = seen
    due, first = parse_timestamp(scheduled), parse_timestamp(requested)
    assert due is not None and first is not None
    assert due - first == interval
    row = wait_listed(ops, "local", lambda row: row["lastSyncCommit"] == head)
    assert row["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES) + 1
