"""The curl walkthrough of the README, as one test: a user's first half hour with the REST API.

Full profile, so the session's pod is really scheduled and becomes Ready (kwok plays the
kubelet). Every call carries an API key minted the way ``streamspace token create`` does; each
step checks what the call did to the Kubernetes objects or to the mirror, not only its status.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from kubernetes import client

from facade_testing import WEBHOOK_SECRET, Client, Response
from gitfixtures import PUBLIC_FORMAT, PUBLIC_FORMAT_TEMPLATES, make_repo, template_yaml
from streamspace.auth.apikeys import create_api_key
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

pytestmark = pytest.mark.e2e

TIMEOUT = 90
SESSIONS = "/api/v1/sessions"
TEMPLATES = "/api/v1/templates"
CATALOG = "/api/v1/catalog/templates"
REPOS = "/api/v1/catalog/repositories"
WEBHOOK = "/webhooks/repository/sync"
TEMPLATE_NAME = "firefox-browser"
REPO_NAME = "community-templates"
SYNC_REQUESTED = "stream.space/sync-requested"
# The catalog entries of PUBLIC_FORMAT that carry a category (vscode has none).
TESTING = PUBLIC_FORMAT_TEMPLATES - {"vscode"}


def ok(r: Response, status: int = 200) -> Any:
    assert r.status == status, r
    return r.body


def refused(r: Response, status: int, code: str) -> None:
    assert r.status == status, r
    assert r.body["code"] == code and r.body["error"], r


def signed_headers(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """What the walkthrough's openssl lines send: Standard Webhooks id, timestamp, signature."""
    delivery, stamp = f"msg_{uuid.uuid4().hex}", str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": delivery,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
    }


def session_ids(caller: Client) -> set[str]:
    body = ok(caller.get(SESSIONS))
    assert body["total"] == len(body["sessions"]), body
    return {s["id"] for s in body["sessions"]}


def catalog_names(caller: Client, **query: str) -> set[str]:
    body = ok(caller.get(f"{CATALOG}?{urlencode(query)}"))
    assert body["total"] == len(body["templates"]), body
    return {t["name"] for t in body["templates"]}


def repository(caller: Client) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {r["name"]: r for r in ok(caller.get(REPOS))["repositories"]}
    return rows.get(REPO_NAME, {})


def sync_requested(objects: Objects) -> str | None:
    """When a sync of the repository was last asked for (the annotation the operator acts on)."""
    obj = objects.get("templaterepositories", REPO_NAME)
    assert obj is not None
    value = (obj["metadata"].get("annotations") or {}).get(SYNC_REQUESTED)
    return None if value is None else str(value)


def wait_synced(caller: Client, commit: str) -> dict[str, Any]:
    """The repository once a sync of ``commit`` has finished (several requests may be queued)."""

    def synced() -> bool:
        row = repository(caller)
        return row.get("status") == "synced" and row.get("lastSyncCommit") == commit

    assert wait_until(synced, TIMEOUT), repository(caller)
    return repository(caller)


def wait_phase(caller: Client, sid: str, phase: str) -> dict[str, Any]:
    """The session as the API shows it once it reports ``phase``."""
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(ok(caller.get(f"{SESSIONS}/{sid}")))
        return bool(seen["phase"] == phase)

    assert wait_until(reached, TIMEOUT, interval=0.5), f"{sid} never reached {phase}: {seen}"
    return seen


def test_readme_walkthrough(
    full_cluster: Any, stack: Any, api: client.ApiClient, tmp_path: Path
) -> None:
    objects = Objects(api, stack.namespace)
    objects.create("templates", TEMPLATE_NAME, {**TEMPLATE, "category": "Web Browsers"})
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        key = create_api_key(conn, "alice", "admin", name="walkthrough")
        bob_key = create_api_key(conn, "bob", "user", name="walkthrough")
    assert key.startswith("sk_")
    alice, bob, anonymous = Client(stack.url, key), Client(stack.url, bob_key), Client(stack.url)

    # No header, no answer; a key that was never minted is refused just the same.
    refused(anonymous.get(SESSIONS), 401, "UNAUTHORIZED")
    refused(Client(stack.url, "sk_" + "x" * 43).get(SESSIONS), 401, "UNAUTHORIZED")

    # List sessions: nothing yet.
    assert ok(alice.get(SESSIONS)) == {
        "sessions": [],
        "total": 0,
        "limit": 100,
        "continue": None,
    }

    # Create a session with flat resources; they apply as both requests and limits.
    created = ok(
        alice.post(
            SESSIONS,
            {
                "user": "alice",
                "template": TEMPLATE_NAME,
                "resources": {"memory": "2Gi", "cpu": "1000m"},
            },
        ),
        201,
    )
    sid = created["id"]
    assert sid.startswith(f"alice-{TEMPLATE_NAME}-"), created
    assert (created["user"], created["template"], created["state"]) == (
        "alice",
        TEMPLATE_NAME,
        "running",
    )
    flat = {"memory": "2Gi", "cpu": "1000m"}
    assert created["resources"] == {"requests": flat, "limits": flat}, created
    cr = objects.session(sid)
    assert cr is not None and cr["spec"]["user"] == "alice", cr
    assert cr["spec"]["template"] == TEMPLATE_NAME

    # Get it, see it listed; another user cannot tell it exists.
    got = ok(alice.get(f"{SESSIONS}/{sid}"))
    assert (got["id"], got["user"], got["template"]) == (sid, "alice", TEMPLATE_NAME)
    assert session_ids(alice) == {sid}
    refused(bob.get(f"{SESSIONS}/{sid}"), 404, "NOT_FOUND")
    assert session_ids(bob) == set()

    # The operator runs it: a pod on a kwok node, a URL in the status.
    running = wait_phase(alice, sid, "Running")
    assert running["url"] and running["podName"], running
    assert [p.metadata.name for p in objects.pods(sid)] == [running["podName"]]

    # Hibernate: the pod goes away, the session stays.
    patched = ok(alice.patch(f"{SESSIONS}/{sid}", {"state": "hibernated"}))
    assert patched["state"] == "hibernated", patched
    asleep = wait_phase(alice, sid, "Hibernated")
    assert asleep["url"] is None and asleep["hibernatedAt"], asleep
    assert wait_until(lambda: objects.pods(sid) == [], TIMEOUT), objects.pods(sid)

    # Connect: a Connection object, and the operator wakes the session for it.
    first = ok(alice.get(f"{SESSIONS}/{sid}/connect"))
    connection_id = first["connectionId"]
    assert first["ready"] is False and first["state"] == "hibernated", first
    conn_cr = objects.get("connections", connection_id)
    assert conn_cr is not None and conn_cr["spec"] == {
        "session": sid,
        "user": "alice",
        "clientIP": "127.0.0.1",
    }, conn_cr
    awake = wait_phase(alice, sid, "Running")
    assert awake["state"] == "running" and awake["url"], awake
    assert objects.spec(sid)["state"] == "running"
    again = ok(alice.get(f"{SESSIONS}/{sid}/connect"))
    assert again["ready"] is True and again["sessionUrl"] == awake["url"], again
    assert again["connectionId"] != connection_id
    assert wait_until(lambda: objects.status(sid).get("activeConnections") == 2, TIMEOUT)

    # Heartbeat on the first connection: the Connection's status records it.
    beat = ok(alice.post(f"{SESSIONS}/{sid}/heartbeat?connectionId={connection_id}"))
    assert beat["connectionId"] == connection_id and beat["lastHeartbeat"], beat
    conn_cr = objects.get("connections", connection_id)
    assert conn_cr is not None and conn_cr["status"]["lastHeartbeat"] == beat["lastHeartbeat"]
    refused(bob.post(f"{SESSIONS}/{sid}/heartbeat?connectionId={connection_id}"), 404, "NOT_FOUND")

    # Templates on the cluster, with and without a category filter.
    listed = ok(alice.get(TEMPLATES))
    assert [t["name"] for t in listed["templates"]] == [TEMPLATE_NAME], listed
    assert listed["templates"][0]["appType"] == "desktop"
    browsers = ok(alice.get(f"{TEMPLATES}?category={quote('Web Browsers')}"))
    assert browsers["total"] == 1, browsers

    # The catalog is empty until a repository is synced.
    assert catalog_names(alice, category="Testing") == set()

    # Add a repository (a local Git repository in the public one's format) and list it.
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    added = ok(
        alice.post(
            REPOS,
            {"name": REPO_NAME, "url": git.url, "branch": "main", "authType": "none"},
        ),
        201,
    )
    assert (added["id"], added["url"], added["branch"]) == (REPO_NAME, git.url, "main"), added
    assert objects.get("templaterepositories", REPO_NAME) is not None
    assert repository(alice)["url"] == git.url

    # Ask for syncs, one repository and then all of them; the catalog fills.
    assert ok(alice.post(f"{REPOS}/{REPO_NAME}/sync"), 202)["repositories"] == [REPO_NAME]
    assert REPO_NAME in ok(alice.post("/api/v1/catalog/sync"), 202)["repositories"]
    row = wait_synced(alice, git.head())
    assert row["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES), row
    assert catalog_names(alice, category="Testing") == TESTING

    # A signed push notification syncs the new commit; a forged one is refused.
    head = git.commit({"extra/xterm.yaml": template_yaml("xterm", "XTerm")}, message="xterm")
    body = json.dumps(
        {"repository_url": git.url, "branch": "main", "ref": "refs/heads/main"}
    ).encode()
    forged = signed_headers(body, "not-the-secret")
    refused(anonymous.post(WEBHOOK, raw=body, headers=forged), 401, "UNAUTHORIZED")
    signed = signed_headers(body)
    requested = sync_requested(objects)
    hooked = ok(anonymous.post(WEBHOOK, raw=body, headers=signed), 202)
    assert hooked["repositories"] == [REPO_NAME] and hooked["total"] == 1, hooked
    # the same delivery again is acknowledged, not acted on
    assert ok(anonymous.post(WEBHOOK, raw=body, headers=signed), 200)["status"] == "duplicate"
    assert sync_requested(objects) not in (None, requested)
    assert wait_synced(alice, head)["templateCount"] == len(PUBLIC_FORMAT_TEMPLATES) + 1
    assert catalog_names(alice, category="Testing") == TESTING | {"xterm"}

    # Keep the connection alive (clients beat every 30 s), then disconnect it.
    ok(alice.post(f"{SESSIONS}/{sid}/heartbeat?connectionId={connection_id}"))
    gone = ok(alice.delete(f"{SESSIONS}/{sid}/disconnect?connectionId={connection_id}"))
    assert gone == {"connectionId": connection_id, "disconnected": True}, gone
    assert wait_until(lambda: objects.get("connections", connection_id) is None, TIMEOUT)
    assert wait_until(lambda: objects.status(sid).get("activeConnections") == 1, TIMEOUT)

    # Delete the session: gone from the API at once, and from the cluster with its children.
    assert alice.delete(f"{SESSIONS}/{sid}").status == 204
    refused(alice.get(f"{SESSIONS}/{sid}"), 404, "NOT_FOUND")
    assert session_ids(alice) == set()
    assert wait_until(lambda: objects.session(sid) is None, TIMEOUT)
    assert wait_until(lambda: objects.get("connections", again["connectionId"]) is None, TIMEOUT)
    assert wait_until(lambda: objects.pods(sid) == [], TIMEOUT)
