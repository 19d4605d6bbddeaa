"""The ``console`` fixture itself, before the console's page exists: the real stack runs a
session to Running on a kwok node, each key is its user, the catalog syncs from a local Git
repository, and Chromium reaches the facade of this very stack."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.remote.webdriver import WebDriver

from browser_testing import console_errors, find, wait_for
from console_testing import TEMPLATE_NAME, USERS, Console
from gitfixtures import PUBLIC_FORMAT_TEMPLATES
from streamspace_dev.process import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SESSIONS = "/api/v1/sessions"


def test_the_console_stack(console: Console, browser: WebDriver, tmp_path: Path) -> None:
    for user, role in USERS.items():
        me = console.rest(user).get("/api/v1/me")
        assert me.status == 200 and me.body["user"] == user and me.body["role"] == role, me

    alice, bob = console.rest("alice"), console.rest("bob")
    created = alice.post(SESSIONS, {"template": TEMPLATE_NAME})
    assert created.status == 201, created
    sid = created.body["id"]
    seen: dict[str, Any] = {}

    def running() -> bool:
        seen.update(alice.get(f"{SESSIONS}/{sid}").body)
        return bool(seen["phase"] == "Running")

    assert wait_until(running, 90, interval=0.5), seen
    assert bob.get(SESSIONS).body["sessions"] == []
    assert bob.get(f"{SESSIONS}/{sid}").status == 404

    console.sync_catalog(tmp_path / "templates")
    listed = alice.get("/api/v1/catalog/templates?limit=100").body
    assert {t["name"] for t in listed["templates"]} >= PUBLIC_FORMAT_TEMPLATES, listed

    browser.get(f"{console.stack.url}/version")
    assert json.loads(find(browser, "body").text)["name"] == "streamspace"
    # A page without an icon of its own makes Chromium ask for /favicon.ico; the facade answers
    # 401 for a path it does not know (a console error, which a page must avoid by naming its
    # icon). Taken here, whether or not the facade serves an icon by now.
    errors: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutException):
        errors = wait_for(browser, console_errors, timeout=5)
    assert all("/favicon.ico" in e["message"] for e in errors), errors
