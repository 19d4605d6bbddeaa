"""Sharing from the web console, in real Chromium against the real stack (issue 19, item 3).

alice shares her session with bob from its row's Share panel; bob sees it with his access and
only the buttons that access allows; alice raises it to control, then revokes it from the panel,
and bob's row goes away without a reload.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from test_console_flows import SESSIONS, act, cell_is, rest_session, row_css, sign_in

from browser_testing import find, gone, shown, wait_for
from console_testing import TEMPLATE_NAME, Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def sign_out(driver: WebDriver) -> None:
    find(driver, "[data-testid=sign-out]").click()
    wait_for(driver, shown("#api-key"), message="the sign-in page again")


def share(driver: WebDriver, user: str, access: str) -> None:
    """Fill and send the open Share panel's form."""
    field = find(driver, "[data-testid=share-user]")
    field.clear()
    field.send_keys(user)
    Select(find(driver, "[data-testid=share-access]")).select_by_value(access)
    find(driver, "[data-testid=share-submit]").click()


def share_level(user: str, access: str) -> Callable[[WebDriver], bool]:
    css = f'table[data-testid=shares] tr[data-share="{user}"] [data-testid=share-level]'

    def condition(driver: WebDriver) -> bool:
        cells = driver.find_elements(By.CSS_SELECTOR, css)
        return any(c.text.strip() == access for c in cells)

    return condition


def enabled(driver: WebDriver, name: str, action: str) -> bool:
    return bool(find(driver, f"{row_css(name)} button[data-action={action}]").is_enabled())


def test_alice_shares_a_session_and_revokes_it(console: Console, browser: WebDriver) -> None:
    name = rest_session(console.rest("alice"), {"template": TEMPLATE_NAME})
    sign_in(browser, console, "alice")
    wait_for(browser, cell_is(name, "access", "owner"), message="alice's row")
    act(browser, name, "share")
    wait_for(browser, shown("[data-testid=share-panel]"))
    assert find(browser, "[data-testid=no-shares]").text == "Shared with nobody."
    share(browser, "bob", "view")
    wait_for(browser, share_level("bob", "view"), message="bob listed with view")
    assert console.rest("bob").get(f"{SESSIONS}/{name}").body["access"] == "view"
    sign_out(browser)

    # bob sees it as a view share: no connect, no changes, no sharing
    sign_in(browser, console, "bob")
    wait_for(browser, cell_is(name, "access", "view"), message="alice's session, for bob")
    for action in ("connect", "hibernate", "terminate", "delete", "share"):
        assert not enabled(browser, name, action), action
    # alice raises it to control meanwhile: his row follows live
    raised = console.rest("alice").post(
        f"{SESSIONS}/{name}/shares", {"user": "bob", "access": "control"}
    )
    assert raised.status == 200, raised
    wait_for(browser, cell_is(name, "access", "control"), message="bob's access raised")
    assert not enabled(browser, name, "delete") and not enabled(browser, name, "share")
    sign_out(browser)

    # alice revokes it from the panel; bob loses it at once
    sign_in(browser, console, "alice")
    act(browser, name, "share")
    wait_for(browser, share_level("bob", "control"), message="bob listed with control")
    find(
        browser, 'table[data-testid=shares] tr[data-share="bob"] button[data-action=revoke]'
    ).click()
    wait_for(browser, shown("[data-testid=no-shares]"), message="the share revoked")
    assert console.rest("bob").get(f"{SESSIONS}/{name}").status == 404
    sign_out(browser)
    sign_in(browser, console, "bob")
    wait_for(browser, gone(row_css(name)), message="alice's session gone for bob")
