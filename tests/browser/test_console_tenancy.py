"""The console's Users and Usage pages in real Chromium, against the real stack (issue 19).

Users (operators and admins): an admin gives alice a group (a bad one refused beside its field),
disables and enables bob (who is refused by the API meanwhile) and deletes a user after the
confirmation; the table tells the identity provider's groups from the admin's. A plain user is
offered no Users page, by navigation or by address, and the API refuses them the list; an
operator reads the page with no action, and the API refuses an operator's change. Usage
(everyone): a session that really ran shows as the user's own row, by user and by template,
with a cost when priced and the caller's groups in the header. Running hours grow while the
test reads them, so only what is deterministic is asserted (who and what has a row, that the
hours are positive, that the totals match a single row). The hooks are decision 201's.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from test_console_admin import OPERATOR, fill, open_page, refused, unlabelled, with_operator
from test_console_flows import RUNNING, rest_session, sign_in

from browser_testing import find, gone, shown, text_is, wait_for
from console_testing import TEMPLATE_NAME, Console
from streamspace.auth.apikeys import create_api_key
from streamspace_dev.process import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

USERS = "/api/v1/users"
USAGE = "/api/v1/analytics/usage"


def user_row(user: str) -> str:
    return f'table[data-testid=users] tr[data-user="{user}"]'


def usage_row(key: str) -> str:
    return f'table[data-testid=usage] tr[data-usage="{key}"]'


def cell(driver: WebDriver, row: str, testid: str) -> str:
    return find(driver, f"{row} [data-testid={testid}]").text.strip()


def positive(row: str, testid: str) -> Callable[[WebDriver], bool]:
    """A condition: the number in ``row``'s ``testid`` cell is above zero."""

    def condition(driver: WebDriver) -> bool:
        try:
            return float(cell(driver, row, testid) or 0) > 0
        except (WebDriverException, ValueError):
            return False

    condition.__name__ = f"positive({row!r}, {testid!r})"
    return condition


def erase(driver: WebDriver, css: str) -> None:
    """Empty an input as a user does (``clear()`` fires no input event for the page to see)."""
    field = wait_for(driver, shown(css))
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.BACKSPACE)


def seen(console: Console, *users: str) -> None:
    """Each of ``users`` makes a request, so that the facade has their row."""
    for user in users:
        assert console.rest(user).get("/api/v1/me").status == 200


def test_an_admin_edits_groups_disables_enables_and_deletes_users(
    console: Console, browser: WebDriver
) -> None:
    with psycopg.connect(console.stack.database_url, autocommit=True) as conn:
        console.keys["carol"] = create_api_key(conn, "carol", "user", "console")
    seen(console, "alice", "bob", "carol")
    sign_in(browser, console, "admin")
    open_page(browser, "nav-users", "#/users", "users-heading")
    alice, bob = user_row("alice"), user_row("bob")
    wait_for(browser, shown(alice), message="alice's row")
    assert cell(browser, alice, "user-role") == "user"
    assert cell(browser, alice, "user-admin-groups") == "—"
    assert cell(browser, bob, "user-disabled") == "no"
    assert cell(browser, user_row("admin"), "user-last-login")  # signed in through the page
    assert unlabelled(browser) == []

    # a group the API refuses: its problem beside the field
    find(browser, f"{alice} button[data-action=edit-groups]").click()
    form = "form[data-testid=user-groups-form]"
    wait_for(browser, shown(form), message="the groups form")
    assert unlabelled(browser) == []
    fill(browser, "#user-groups", "team-a, not a group!")
    find(browser, "[data-testid=user-groups-save]").click()
    wait_for(browser, shown("#user-groups-error"), message="the groups' problem")
    assert find(browser, "#user-groups").get_attribute("aria-invalid") == "true"
    refused(browser, 422)
    assert console.rest("admin").get(f"{USERS}/alice").body["adminGroups"] == []

    fill(browser, "#user-groups", "team-a, gpu-users")
    find(browser, "[data-testid=user-groups-save]").click()
    wait_for(browser, gone(form), message="saved")
    wait_for(browser, text_is(f"{alice} [data-testid=user-admin-groups]", "gpu-users, team-a"))
    assert cell(browser, alice, "user-idp-groups") == "—"  # an API key names no groups
    assert console.rest("alice").get("/api/v1/me").body["groups"] == ["gpu-users", "team-a"]

    # the filter by group
    fill(browser, "#users-group", "team-a")
    find(browser, "[data-testid=users-filter]").click()
    wait_for(browser, gone(bob), message="bob filtered out")
    assert browser.find_elements(By.CSS_SELECTOR, alice)
    erase(browser, "#users-group")
    find(browser, "[data-testid=users-filter]").click()
    wait_for(browser, shown(bob), message="everyone again")

    # bob disabled: refused by the API at once; enabled: let in again
    find(browser, f"{bob} button[data-action=disable]").click()
    wait_for(browser, text_is(f"{bob} [data-testid=user-disabled]", "yes"), message="disabled")
    assert find(browser, f"{bob} button[data-action=disable]").get_attribute("disabled")
    refusal = console.rest("bob").get("/api/v1/me")
    assert refusal.status == 403 and refusal.body["code"] == "USER_DISABLED", refusal
    find(browser, f"{bob} button[data-action=enable]").click()
    wait_for(browser, text_is(f"{bob} [data-testid=user-disabled]", "no"), message="enabled")
    assert console.rest("bob").get("/api/v1/me").status == 200

    # an admin cannot disable themself: the problem is named, nothing changes
    find(browser, f"{user_row('admin')} button[data-action=disable]").click()
    wait_for(browser, shown("[role=alert]"), message="the refusal")
    assert "disabled: an admin cannot disable themself" in find(browser, "[role=alert]").text
    refused(browser, 422)
    assert cell(browser, user_row("admin"), "user-disabled") == "no"

    # deleting asks first; carol's row and key go
    carol = user_row("carol")
    find(browser, f"{carol} button[data-action=delete]").click()
    browser.switch_to.alert.dismiss()
    assert browser.find_elements(By.CSS_SELECTOR, carol)
    find(browser, f"{carol} button[data-action=delete]").click()
    browser.switch_to.alert.accept()
    wait_for(browser, gone(carol), message="carol deleted")
    assert console.rest("carol").get("/api/v1/me").status == 401  # her key went with her


def test_an_operator_reads_the_users_but_changes_none(console: Console, browser: WebDriver) -> None:
    seen(console, "alice")
    sign_in(browser, with_operator(console), OPERATOR)
    open_page(browser, "nav-users", "#/users", "users-heading")
    wait_for(browser, shown(user_row("alice")), message="alice's row")
    assert cell(browser, user_row(OPERATOR), "user-role") == "operator"
    assert not browser.find_elements(By.CSS_SELECTOR, "table[data-testid=users] button")
    # what the page does not offer, the API refuses
    olga = console.rest(OPERATOR)
    assert olga.patch(f"{USERS}/alice", {"disabled": True}).status == 403
    assert olga.delete(f"{USERS}/alice").status == 403
    assert console.rest("alice").get("/api/v1/me").status == 200


def test_a_plain_user_has_usage_but_no_users_page(console: Console, browser: WebDriver) -> None:
    sign_in(browser, console, "alice")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-users]")
    assert browser.find_elements(By.CSS_SELECTOR, "[data-testid=nav-usage]")
    # the address alone does not show it
    browser.execute_script("location.hash = arguments[0]", "#/users")
    wait_for(browser, shown("h1#sessions-heading"), message="#/users not offered")
    assert not browser.find_elements(By.CSS_SELECTOR, "h1#users-heading")
    # and the API refuses her the list and the other users' rows
    assert console.rest("alice").get(USERS).status == 403
    seen(console, "bob")
    assert console.rest("alice").get(f"{USERS}/bob").status == 404
    assert console.rest("alice").patch(f"{USERS}/alice", {"groups": ["admins"]}).status == 403


def test_the_usage_page_shows_a_session_that_ran(console: Console, browser: WebDriver) -> None:
    alice = console.rest("alice")
    name = rest_session(alice, {"template": TEMPLATE_NAME})

    def ran() -> bool:
        items = alice.get(USAGE).body["items"]
        return bool(items) and items[0]["runningHours"] > 0

    assert wait_until(ran, RUNNING), (alice.get(f"/api/v1/sessions/{name}"), alice.get(USAGE))
    made = console.rest("admin").patch(f"{USERS}/alice", {"groups": ["team-a"]})
    assert made.status == 200, made
    seen(console, "bob")  # bob has no usage: a row of his would show someone else's

    sign_in(browser, console, "alice")
    open_page(browser, "nav-usage", "#/usage", "usage-heading")
    wait_for(browser, text_is("[data-testid=usage-groups]", "team-a"), message="her groups")
    row = usage_row("alice")
    wait_for(browser, positive(row, "usage-running"), message="alice's running hours")
    assert [
        e.get_attribute("data-usage")
        for e in browser.find_elements(By.CSS_SELECTOR, "table[data-testid=usage] tr[data-usage]")
    ] == ["alice"]
    assert cell(browser, row, "usage-gpu") == "0"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=usage-cost]")
    assert float(cell(browser, "[data-testid=usage-totals]", "usage-running")) > 0
    assert find(browser, "#usage-from").get_attribute("value") < find(
        browser, "#usage-to"
    ).get_attribute("value")
    assert unlabelled(browser) == []

    # a price the API refuses: its problem beside the field
    fill(browser, "#usage-cpu-price", "lots")
    find(browser, "[data-testid=usage-show]").click()
    wait_for(browser, shown("#usage-cpu-price-error"), message="the price's problem")
    assert find(browser, "#usage-cpu-price").get_attribute("aria-invalid") == "true"
    refused(browser, 422)

    # by template, priced per session-hour: a cost column
    erase(browser, "#usage-cpu-price")
    fill(browser, "#usage-session-price", "3")
    Select(find(browser, "#usage-group-by")).select_by_visible_text("template")
    find(browser, "[data-testid=usage-show]").click()
    template = usage_row(TEMPLATE_NAME)
    wait_for(browser, shown(template), message="the template's row")
    wait_for(browser, gone("#usage-cpu-price-error"))
    assert not browser.find_elements(By.CSS_SELECTOR, row)
    wait_for(browser, positive(template, "usage-cost"), message="a cost")
    assert float(cell(browser, "[data-testid=usage-totals]", "usage-cost")) > 0
