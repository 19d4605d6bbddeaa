"""The web console on the real stack, for the browser tests (issue 18).

``console`` is the ``stack`` fixture of ``tests/conftest.py`` (operator + facade + PostgreSQL on
a namespace of the test's own) on the full profile, so a session's pod is scheduled on a kwok
node and the session goes Pending → Running for real. The console is the page the facade serves
at ``/``; its callers sign in with API keys minted the way ``streamspace token create`` does:
one for an admin, one each for alice and bob (plain users).

Both processes run with short idle checks and warning (``stack_env``), so a session created with
a short ``idleTimeout`` shows its hibernate warning within seconds. Sessions created without one
keep the default (30 minutes) and are never hibernated by the idle timer during a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client

from facade_testing import Client
from gitfixtures import PUBLIC_FORMAT, GitRepo, make_repo
from streamspace.auth.apikeys import create_api_key
from streamspace_dev.process import wait_until
from streamspace_testing import TEMPLATE, Objects

FAST = {
    "IDLE_CHECK_INTERVAL": "1s",
    "HIBERNATE_WARNING": "8s",
    "STALE_AFTER": "6s",
    "HEARTBEAT_CHECK_INTERVAL": "1s",
}
"""Idle checks every second; the warning 8 s before an idle session hibernates; a connection
without a heartbeat for 6 s is stale (the console then heartbeats every 2 s)."""
TEMPLATE_NAME = "firefox"
REPO_NAME = "community-templates"
REPOS = "/api/v1/catalog/repositories"
USERS = {"admin": "admin", "alice": "user", "bob": "user"}
TIMEOUT = 90


@dataclass
class Console:
    stack: Any  # conftest.Stack
    objects: Objects
    keys: dict[str, str] = field(default_factory=dict)
    """API key by user name: admin, alice, bob."""

    @property
    def url(self) -> str:
        """The console's page (the facade's ``/``)."""
        return f"{self.stack.url}/"

    def rest(self, user: str) -> Client:
        """The REST API as ``user``, with the same key the browser signs in with."""
        return Client(self.stack.url, self.keys[user])

    def sync_catalog(self, directory: Path, files: dict[str, str] = PUBLIC_FORMAT) -> GitRepo:
        """A local Git repository of templates, added as the admin and synced into the catalog."""
        git = make_repo(directory, files)
        admin = self.rest("admin")
        added = admin.post(
            REPOS, {"name": REPO_NAME, "url": git.url, "branch": "main", "authType": "none"}
        )
        assert added.status == 201, added
        asked = admin.post(f"{REPOS}/{REPO_NAME}/sync")
        assert asked.status == 202, asked
        head = git.head()

        def synced() -> bool:
            rows = admin.get(REPOS).body["repositories"]
            row: dict[str, Any] = next((r for r in rows if r["name"] == REPO_NAME), {})
            return row.get("status") == "synced" and row.get("lastSyncCommit") == head

        assert wait_until(synced, TIMEOUT), admin.get(REPOS)
        return git


@pytest.fixture
def stack_env() -> dict[str, str]:
    """The browser tests' ``stack``: short idle checks and warning (see ``FAST``)."""
    return dict(FAST)


@pytest.fixture
def console(full_cluster: Any, stack: Any, api: client.ApiClient) -> Console:
    """The console on the real stack: a template to start, keys for admin, alice and bob."""
    objects = Objects(api, stack.namespace)
    objects.create("templates", TEMPLATE_NAME, TEMPLATE)
    with psycopg.connect(stack.database_url, autocommit=True) as conn:
        keys = {user: create_api_key(conn, user, role, "console") for user, role in USERS.items()}
    return Console(stack, objects, keys)
