"""The console's operator and admin pages in real Chromium, against the real stack (issue 18).

Repositories (an operator adds a local Git repository and sees it synced), Admin (an API key
created, shown once, revoked; the audit log naming its creation; the cluster's figures live),
a session's pod log followed live, a plugin's configure form generated from its
``configSchema`` (a secret property never shown back), and a plain user offered none of it.
The hooks used are the ``data-testid``/``data-action`` contract of decision 162.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from kubernetes import client
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from test_console_flows import (
    RUNNING,
    act,
    cell_is,
    rest_session,
    row_css,
    sign_in,
    text_contains,
)

from browser_testing import console_errors, find, gone, shown, text_is, wait_for
from console_testing import TEMPLATE_NAME, Console
from gitfixtures import PUBLIC_FORMAT, make_repo
from plugin_testing import add_catalog_plugin
from streamspace.auth.apikeys import create_api_key
from streamspace_dev.process import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OPERATOR = "olga"
SECRET = "tok-never-shown-8f2c91"
NAVIGATION = ("nav-repositories", "nav-plugins", "nav-admin")


def with_operator(console: Console) -> Console:
    """``console`` with an API key for an operator too (``olga``)."""
    with psycopg.connect(console.stack.database_url, autocommit=True) as conn:
        console.keys[OPERATOR] = create_api_key(conn, OPERATOR, "operator", "console")
    return console


def open_page(driver: WebDriver, nav: str, hash_: str, heading: str) -> None:
    find(driver, f"[data-testid={nav}]").click()
    wait_for(driver, lambda d: d.execute_script("return location.hash") == hash_, message=hash_)
    wait_for(driver, shown(f"h1#{heading}"), message=f"the {hash_} page")


def fill(driver: WebDriver, css: str, text: str) -> None:
    field = wait_for(driver, shown(css))
    field.clear()
    field.send_keys(text)


def labelled(driver: WebDriver, css: str) -> list[str]:
    """The texts of the labels of the element ``css`` (every input has one)."""
    labels: list[str] = driver.execute_script(
        "return [...arguments[0].labels].map(l => l.textContent.trim())", find(driver, css)
    )
    return labels


def unlabelled(driver: WebDriver) -> list[str]:
    """The controls on the page that no label names (every one must have one)."""
    found: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('input, select, textarea')]"
        ".filter(e => e.labels.length === 0).map(e => e.id || e.outerHTML)"
    )
    return found


def refused(driver: WebDriver, status: int) -> None:
    """Take the console errors a refused request leaves (Chromium logs every 4xx answer)."""
    errors = console_errors(driver)
    assert errors and all(f"status of {status}" in e.get("message", "") for e in errors), errors


def row_text(css: str, testid: str, part: str) -> Callable[[WebDriver], bool]:
    return text_contains(f"{css} [data-testid={testid}]", part)


def test_an_operator_adds_a_repository_and_sees_it_synced(
    console: Console, browser: WebDriver, tmp_path: Path
) -> None:
    git = make_repo(tmp_path / "templates", PUBLIC_FORMAT)
    sign_in(browser, with_operator(console), OPERATOR)
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-repositories]")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-admin]")
    open_page(browser, "nav-repositories", "#/repositories", "repositories-heading")
    wait_for(browser, shown("table[data-testid=repositories]"))
    assert labelled(browser, "#repo-url") == ["Git URL"]
    assert labelled(browser, "#repo-auth-type") == ["Authentication"]

    # a name the API refuses: its problem next to the field, the request's in role=alert
    fill(browser, "#repo-url", git.url)
    fill(browser, "#repo-name", "Not_A_Label")
    find(browser, "[data-testid=repo-add]").click()
    wait_for(browser, shown("#repo-name-error"), message="the name's problem")
    assert find(browser, "#repo-name").get_attribute("aria-invalid") == "true"
    assert "DNS label" in find(browser, "#repo-name-error").text
    assert find(browser, "[role=alert]").text
    refused(browser, 422)

    # the credential fields follow the auth type
    auth = Select(find(browser, "#repo-auth-type"))
    auth.select_by_value("basic")
    wait_for(browser, shown("#repo-username"))
    assert find(browser, "#repo-password").get_attribute("type") == "password"
    assert unlabelled(browser) == []
    auth.select_by_value("none")
    wait_for(browser, gone("#repo-password"))

    fill(browser, "#repo-name", "team-templates")
    find(browser, "[data-testid=repo-add]").click()
    row = 'tr[data-repository="team-templates"]'
    wait_for(browser, shown(row), message="the new repository's row")
    wait_for(browser, text_is(f"{row} [data-testid=repo-status]", "synced"), 90, "synced")
    assert find(browser, f"{row} [data-testid=repo-error]").text == ""
    wait_for(
        browser, lambda d: find(d, f"{row} [data-testid=repo-templates]").text not in ("", "0")
    )

    # sync it again, one and all: the API takes both
    find(browser, f"{row} button[data-action=sync]").click()
    wait_for(browser, text_contains("[role=status]", "Sync: team-templates"), message="synced")
    find(browser, "[data-testid=repo-sync-all]").click()
    wait_for(browser, text_contains("[role=status]", "Syncing 1 repositories"))

    find(browser, f"{row} button[data-action=delete]").click()
    wait_for(browser, gone(row), message="the repository deleted")
    assert console.rest("admin").get("/api/v1/repositories").body["repositories"] == []


def test_an_admin_creates_a_key_sees_it_once_revokes_it_and_the_audit_log_shows_it(
    console: Console, browser: WebDriver
) -> None:
    sign_in(browser, console, "admin")
    open_page(browser, "nav-admin", "#/admin", "admin-heading")
    # the cluster's figures, from the cluster stream
    wait_for(browser, text_is("[data-testid=cluster-live]", "live"), message="cluster stream")
    wait_for(browser, lambda d: find(d, "[data-testid=metric-templates]").text == "1")

    assert labelled(browser, "#key-user") == ["User"]
    assert unlabelled(browser) == []
    fill(browser, "#key-user", "carol")
    Select(find(browser, "#key-role")).select_by_visible_text("operator")
    fill(browser, "#key-name", "ci")
    find(browser, "[data-testid=key-create]").click()
    key = wait_for(browser, shown("[data-testid=new-key]"), message="the new key").text.strip()
    assert key.startswith("sk_"), key
    row = f'tr[data-prefix="{key[:9]}"]'
    wait_for(browser, shown(row), message="the key's row")
    assert find(browser, f"{row} [data-testid=key-user]").text == "carol"
    assert console.rest("admin").get("/api/v1/me").status == 200
    carol = type(console.rest("admin"))(console.stack.url, key)
    assert carol.get("/api/v1/me").body["user"] == "carol"

    # the audit log names the creation (who, what, of whom)
    created = "tr[data-audit]"
    wait_for(browser, row_text(created, "audit-resource", "api_key carol"), message="audit row")
    assert any(
        "create" in r.find_element(By.CSS_SELECTOR, "[data-testid=audit-action]").text
        and "admin" in r.find_element(By.CSS_SELECTOR, "[data-testid=audit-user]").text
        for r in browser.find_elements(By.CSS_SELECTOR, created)
    )
    fill(browser, "#audit-action", "revoke")
    find(browser, "[data-testid=audit-filter]").click()
    wait_for(browser, gone(created), message="no revocation yet")

    # shown once: the page again has only the prefix
    open_page(browser, "nav-sessions", "#/sessions", "sessions-heading")
    open_page(browser, "nav-admin", "#/admin", "admin-heading")
    wait_for(browser, shown(row))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=new-key]")
    assert key not in browser.page_source

    find(browser, f"{row} button[data-action=revoke]").click()
    wait_for(browser, lambda d: find(d, f"{row} [data-testid=key-revoked]").text.strip())
    assert find(browser, f"{row} button[data-action=revoke]").get_attribute("disabled")
    assert carol.get("/api/v1/me").status == 401
    fill(browser, "#audit-action", "revoke")
    find(browser, "[data-testid=audit-filter]").click()
    wait_for(browser, row_text(created, "audit-action", "revoke"), message="the revocation")


def test_the_pod_log_shows_lines_live(
    console: Console, browser: WebDriver, full_cluster: Any, api: client.ApiClient
) -> None:
    plane = full_cluster.plane
    assert plane is not None, "pod logs are played by the local control plane's kwok"
    alice = console.rest("alice")
    name = rest_session(alice, {"template": TEMPLATE_NAME})

    def pod() -> str | None:
        view = alice.get(f"/api/v1/sessions/{name}").body
        return view["podName"] if view.get("phase") == "Running" and view["podName"] else None

    assert wait_until(lambda: pod() is not None, RUNNING), alice.get(f"/api/v1/sessions/{name}")
    pod_name = str(pod())
    namespace = console.stack.namespace
    spec = client.CoreV1Api(api).read_namespaced_pod(pod_name, namespace).spec
    container = spec.containers[0].name

    sign_in(browser, console, "alice")
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    # nothing written yet: the facade refuses the upgrade (409), and the page says so
    act(browser, name, "logs")
    state = "[data-testid=pod-log-state]"
    wait_for(browser, text_contains(state, "not available"), message="no log yet")
    errors = console_errors(browser)
    assert errors and all("409" in e.get("message", "") for e in errors), errors

    plane.write_pod_log(namespace, pod_name, container, "desktop starting", "listening on 3000")
    find(browser, "[data-testid=pod-log-reopen]").click()
    log = "pre[data-testid=pod-log]"
    wait_for(browser, text_contains(log, "listening on 3000"), message="the log's history")
    assert "desktop starting" in find(browser, log).text
    wait_for(browser, text_is(state, "live"))
    plane.write_pod_log(namespace, pod_name, container, "a request from the browser")
    wait_for(browser, text_contains(log, "a request from the browser"), message="a new line")
    find(browser, "[data-testid=pod-log-close]").click()
    wait_for(browser, gone(log))


def test_a_plugins_configure_form_comes_from_its_schema_and_hides_secrets(
    console: Console, browser: WebDriver
) -> None:
    catalog_id = add_catalog_plugin(console.stack)
    operator = console.stack.client(OPERATOR, "operator")
    config = {"url": "https://hooks.example.com/x", "channel": "#ops", "token": SECRET}
    made = operator.post(
        "/api/v1/plugins/install", {"pluginId": catalog_id, "name": "hook", "config": config}
    )
    assert made.status == 201, made

    sign_in(browser, console, "admin")
    open_page(browser, "nav-plugins", "#/plugins", "plugins-heading")
    row = 'tr[data-plugin="hook"]'
    wait_for(browser, shown(row), message="the installed plugin")
    wait_for(browser, shown('[data-testid=plugin-catalog-item][data-name="audit-hook"]'))
    # its manifest asks for a high-risk permission: an admin approves it
    wait_for(browser, text_is(f"{row} [data-testid=plugin-phase]", "PendingApproval"), 60)
    find(browser, f"{row} button[data-action=approve]").click()
    wait_for(browser, gone(f"{row} button[data-action=approve]"), 60, "approved")
    assert console.rest("admin").get("/api/v1/plugins/hook").body["approvedPermissions"] == [
        "sessions.read"
    ]

    find(browser, f"{row} button[data-action=configure]").click()
    form = "form[data-testid=plugin-config-form]"
    wait_for(browser, shown(form), message="the configure form")
    fields = {
        str(e.get_attribute("data-field")): e
        for e in browser.find_elements(By.CSS_SELECTOR, f"{form} [data-field]")
    }
    assert set(fields) == {"url", "channel", "token"}
    assert labelled(browser, "#config-url") == ["url (required)"]
    assert fields["url"].get_attribute("value") == config["url"]
    assert fields["channel"].get_attribute("value") == "#ops"
    token = fields["token"]
    assert token.get_attribute("type") == "password"
    assert token.get_attribute("value") == ""
    assert "leave empty to keep it" in find(browser, "#config-token-hint").text
    assert unlabelled(browser) == []
    assert SECRET not in browser.page_source

    # a value the schema refuses (its pattern: the server checks it): named next to its field
    fill(browser, "#config-url", "http://hooks.example.com/x")
    find(browser, f"{form} [data-testid=plugin-config-form-submit]").click()
    wait_for(browser, shown("#config-url-error"), message="the url's problem")
    assert find(browser, "#config-url").get_attribute("aria-invalid") == "true"
    refused(browser, 422)
    fill(browser, "#config-url", config["url"])

    fill(browser, "#config-channel", "#alerts")
    find(browser, f"{form} [data-testid=plugin-config-form-submit]").click()
    wait_for(browser, gone(form), message="saved")
    stored = console.rest("admin").get("/api/v1/plugins/hook").body
    assert stored["config"] == {"url": config["url"], "channel": "#alerts"}, stored
    assert stored["secretConfig"] == ["token"], stored  # left empty: kept
    find(browser, f"{row} button[data-action=configure]").click()
    wait_for(browser, shown("#config-token"))
    assert find(browser, "#config-token").get_attribute("value") == ""
    assert SECRET not in browser.page_source

    find(browser, f"{row} button[data-action=deliveries]").click()
    wait_for(browser, shown("table[data-testid=deliveries]"), message="the delivery log")


def test_an_operator_installs_a_plugin_from_its_generated_form(
    console: Console, browser: WebDriver
) -> None:
    add_catalog_plugin(console.stack)
    sign_in(browser, with_operator(console), OPERATOR)
    open_page(browser, "nav-plugins", "#/plugins", "plugins-heading")
    item = '[data-testid=plugin-catalog-item][data-name="audit-hook"]'
    wait_for(browser, shown(item), message="the catalog entry")
    find(browser, f"{item} button[data-action=install]").click()
    form = "form[data-testid=plugin-install-form]"
    wait_for(browser, shown(form), message="the install form")
    assert find(browser, "#install-url").get_attribute("required") == "true"
    assert find(browser, "#install-token").get_attribute("type") == "password"
    assert unlabelled(browser) == []
    fill(browser, "#install-name", "team-hook")
    fill(browser, "#install-url", "https://hooks.example.com/team")
    fill(browser, "#install-token", SECRET)
    find(browser, f"{form} [data-testid=plugin-install-form-submit]").click()
    signing = wait_for(browser, shown("[data-testid=signing-secret]"), message="shown once")
    assert signing.text.startswith("whsec_"), signing.text
    row = 'tr[data-plugin="team-hook"]'
    wait_for(browser, shown(row), message="the installed plugin's row")
    wait_for(browser, text_is(f"{row} [data-testid=plugin-phase]", "PendingApproval"), 60)
    # an operator may not approve
    assert not browser.find_elements(By.CSS_SELECTOR, f"{row} button[data-action=approve]")
    assert SECRET not in browser.page_source
    view = console.rest("admin").get("/api/v1/plugins/team-hook").body
    assert view["config"] == {"url": "https://hooks.example.com/team"}, view
    assert view["secretConfig"] == ["token"], view

    find(browser, f"{row} button[data-action=disable]").click()
    wait_for(browser, text_is(f"{row} [data-testid=plugin-enabled]", "no"), message="disabled")
    find(browser, f"{row} button[data-action=uninstall]").click()
    wait_for(browser, gone(row), message="uninstalled")


def test_a_plain_user_sees_no_operator_or_admin_navigation(
    console: Console, browser: WebDriver
) -> None:
    sign_in(browser, console, "alice")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-repositories]")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-admin]")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=session-user]")
    # an admin's address shows the user's own page, not the admin one
    for hash_ in ("#/admin", "#/repositories"):
        browser.execute_script("location.hash = arguments[0]", hash_)
        wait_for(browser, shown("h1#sessions-heading"), message=f"{hash_} not offered")
        assert not browser.find_elements(
            By.CSS_SELECTOR, "h1#admin-heading, h1#repositories-heading"
        )
    # the plugins page reads, with no action for a user
    open_page(browser, "nav-plugins", "#/plugins", "plugins-heading")
    wait_for(browser, shown("table[data-testid=plugins]"))
    assert not browser.find_elements(By.CSS_SELECTOR, "button[data-action]")


def test_operators_filter_sessions_by_user(console: Console, browser: WebDriver) -> None:
    mine = rest_session(console.rest("alice"), {"template": TEMPLATE_NAME})
    his = rest_session(console.rest("bob"), {"template": TEMPLATE_NAME})
    sign_in(browser, console, "admin")
    wait_for(browser, shown(row_css(mine)))
    wait_for(browser, shown(row_css(his)))
    fill(browser, "#session-user", "bob")
    wait_for(browser, gone(row_css(mine)), message="alice's filtered out")
    assert find(browser, f"{row_css(his)} [data-testid=user]").text == "bob"
