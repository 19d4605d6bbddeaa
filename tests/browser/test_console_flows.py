"""The web console's flows in real Chromium, against the real stack (issue 18, item 3).

The console is the page the facade serves at ``/``; these tests hold it to its contract (the
``data-testid`` attributes below) and to what the user sees: signing in with an API key, a
session started from the page going Pending → Running with no reload, hibernate and wake, the
second user never seeing the first one's sessions, the catalog's search and pages, the hibernate
warning, signing out, an HttpOnly session cookie and a Content-Security-Policy. No test may leave
an error in the browser's console (``no_console_errors``).

``STREAMSPACE_SCREENSHOTS=docs/images`` (``make screenshots``) saves ``sessions.png`` and
``catalog.png`` at the moments they show.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from browser_testing import docs_picture, find, gone, shown, text_is, wait_for
from console_testing import TEMPLATE_NAME, Console
from facade_testing import Client
from gitfixtures import PUBLIC_FORMAT, template_yaml

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SESSIONS = "/api/v1/sessions"
COOKIE = "streamspace_session"
RUNNING = 90.0
"""Seconds a session gets to reach Running (or Hibernated) on a loaded machine."""
ROWS = "table[data-testid=sessions] tr[data-session]"
# 40 more templates than the public format's, so that the catalog has more than one page (they
# sort after Chromium, Firefox and GIMP, which the first page and its picture show).
MANY = {
    **PUBLIC_FORMAT,
    **{f"more/tool-{i:02}.yaml": template_yaml(f"tool-{i:02}", f"Tool {i:02}") for i in range(40)},
}

# Every phase text each session row showed, in order, recorded in the page by a MutationObserver
# (so a phase shown for a moment between two polls is not missed).
RECORD_PHASES = """
window.__phases = {};
const record = () => {
  for (const row of document.querySelectorAll("tr[data-session]")) {
    const cell = row.querySelector("[data-testid=phase]");
    const text = cell ? cell.textContent.trim() : "";
    const seen = (window.__phases[row.dataset.session] ||= []);
    if (text && seen[seen.length - 1] !== text) seen.push(text);
  }
};
new MutationObserver(record).observe(document.body, {
  subtree: true, childList: true, characterData: true, attributes: true,
});
record();
window.__notReloaded = true;
"""


# -- the page ----------------------------------------------------------------------------------


def row_css(name: str) -> str:
    return f'table[data-testid=sessions] tr[data-session="{name}"]'


def cell_is(name: str, testid: str, expected: str) -> Callable[[WebDriver], bool]:
    """A condition: session ``name``'s ``testid`` cell reads ``expected`` (any case)."""

    def condition(driver: WebDriver) -> bool:
        try:
            cells = driver.find_elements(By.CSS_SELECTOR, f"{row_css(name)} [data-testid={testid}]")
            return any(c.text.strip().lower() == expected.lower() for c in cells)
        except WebDriverException:  # re-rendered between finding and reading: look again
            return False

    condition.__name__ = f"cell_is({name!r}, {testid!r}, {expected!r})"
    return condition


def text_contains(css: str, part: str) -> Callable[[WebDriver], bool]:
    def condition(driver: WebDriver) -> bool:
        try:
            return any(part in e.text for e in driver.find_elements(By.CSS_SELECTOR, css))
        except WebDriverException:
            return False

    condition.__name__ = f"text_contains({css!r}, {part!r})"
    return condition


def shown_rows(driver: WebDriver) -> set[str]:
    return {
        str(row.get_attribute("data-session"))
        for row in driver.find_elements(By.CSS_SELECTOR, ROWS)
    }


def sign_in(driver: WebDriver, console: Console, user: str) -> None:
    """Open the console, sign in with ``user``'s API key, wait for the live sessions page."""
    driver.get(console.url)
    field = wait_for(driver, shown("#api-key"))
    labels = driver.execute_script(
        "return [...arguments[0].labels].map(l => l.textContent.trim())", field
    )
    assert any("API key" in label for label in labels), labels
    field.clear()
    field.send_keys(console.keys[user])
    find(driver, "[data-testid=sign-in]").click()
    wait_for(driver, text_contains("[data-testid=whoami]", user), message=f"signed in as {user}")
    wait_for(driver, shown("table[data-testid=sessions]"), message="the sessions page")
    wait_for(driver, text_is("[data-testid=live]", "live"), message="the WebSocket is open")


def act(driver: WebDriver, name: str, action: str) -> None:
    """Click a row's button; accept the confirmation the page may ask for."""
    find(driver, f"{row_css(name)} button[data-action={action}]").click()
    with contextlib.suppress(NoAlertPresentException):
        driver.switch_to.alert.accept()


def choose_template(driver: WebDriver, name: str) -> None:
    """Pick ``name`` in the start form's select, as a user does (click its option).

    By the option's ``value`` property: an option whose value equals its text may carry no
    ``value`` attribute (Preact leaves it out), which ``Select.select_by_value`` looks for.
    """
    select = wait_for(driver, shown("select[data-testid=template-select]"))

    def option(_: WebDriver) -> WebElement | None:
        for candidate in select.find_elements(By.TAG_NAME, "option"):
            if candidate.get_property("value") == name:
                return candidate
        return None

    wait_for(driver, option, message=f"template {name} offered").click()
    wait_for(driver, lambda _: select.get_property("value") == name, message=f"{name} chosen")


def catalog_names(driver: WebDriver) -> list[str]:
    try:
        items = driver.find_elements(By.CSS_SELECTOR, "[data-testid=catalog-item]")
        return [str(item.get_attribute("data-name")) for item in items]
    except WebDriverException:
        return []


def rest_session(caller: Client, spec: dict[str, Any]) -> str:
    created = caller.post(SESSIONS, spec)
    assert created.status == 201, created
    return str(created.body["id"])


# -- the flows ---------------------------------------------------------------------------------


def test_sign_in_with_an_api_key_then_sign_out(console: Console, browser: WebDriver) -> None:
    sign_in(browser, console, "alice")
    assert "alice" in find(browser, "[data-testid=whoami]").text
    assert browser.execute_script("return location.hash") in ("", "#/", "#/sessions")
    assert str(find(browser, "[data-testid=nav-sessions]").get_attribute("href")).endswith(
        "#/sessions"
    )
    assert str(find(browser, "[data-testid=nav-catalog]").get_attribute("href")).endswith(
        "#/catalog"
    )
    assert browser.get_cookie(COOKIE) is not None

    find(browser, "[data-testid=sign-out]").click()
    wait_for(browser, shown("#api-key"), message="the sign-in page again")
    wait_for(browser, gone("[data-testid=whoami]"))
    wait_for(browser, lambda d: d.get_cookie(COOKIE) is None, message="the cookie cleared")
    browser.refresh()  # still signed out after a reload: the cookie is gone, not only the view
    wait_for(browser, shown("#api-key"))
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=whoami]")


def test_a_started_session_goes_pending_then_running_without_a_reload(
    console: Console, browser: WebDriver
) -> None:
    sign_in(browser, console, "alice")
    assert shown_rows(browser) == set()
    browser.execute_script(RECORD_PHASES)
    choose_template(browser, TEMPLATE_NAME)
    find(browser, "button[data-testid=start]").click()

    row = wait_for(browser, shown(ROWS), message="the new session's row")
    name = str(row.get_attribute("data-session"))
    assert name.startswith(f"alice-{TEMPLATE_NAME}-"), name
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    assert wait_for(browser, cell_is(name, "state", "running"))
    phases = [p.lower() for p in browser.execute_script("return window.__phases")[name]]
    assert "pending" in phases and phases[-1] == "running", phases
    assert phases.index("pending") < phases.index("running"), phases
    assert browser.execute_script("return window.__notReloaded") is True, "the page reloaded"
    for action in ("connect", "hibernate", "terminate"):
        assert browser.find_elements(By.CSS_SELECTOR, f"{row_css(name)} [data-action={action}]")

    rest = console.rest("alice").get(f"{SESSIONS}/{name}")
    assert rest.status == 200 and rest.body["phase"] == "Running", rest
    idle = f"{row_css(name)} [data-testid=idle]"
    wait_for(browser, lambda d: find(d, idle).text.strip(), message="the idle countdown")
    docs_picture(browser, "sessions")


def test_hibernate_and_wake(console: Console, browser: WebDriver) -> None:
    alice = console.rest("alice")
    name = rest_session(alice, {"template": TEMPLATE_NAME})
    sign_in(browser, console, "alice")
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")

    act(browser, name, "hibernate")
    wait_for(browser, cell_is(name, "state", "hibernated"), message="state hibernated")
    wait_for(browser, cell_is(name, "phase", "Hibernated"), RUNNING, f"{name} Hibernated")
    assert alice.get(f"{SESSIONS}/{name}").body["state"] == "hibernated"
    assert console.objects.spec(name)["state"] == "hibernated"

    act(browser, name, "wake")
    wait_for(browser, cell_is(name, "state", "running"), message="state running")
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running again")
    assert console.objects.spec(name)["state"] == "running"


def test_a_connection_lives_while_its_tab_is_open(console: Console, browser: WebDriver) -> None:
    """Connect opens the session in a tab; while it is open the console heartbeats (a third of
    STALE_AFTER), so the connection outlives STALE_AFTER; closing the tab disconnects it."""
    alice = console.rest("alice")
    name = rest_session(alice, {"template": TEMPLATE_NAME})
    connections = f"{SESSIONS}/{name}/connections"
    sign_in(browser, console, "alice")
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    home = browser.current_window_handle
    act(browser, name, "connect")
    wait_for(browser, lambda d: len(d.window_handles) == 2, message="the session's tab")

    beats: set[str] = set()

    def heartbeats_past_stale_after(_: WebDriver) -> bool:
        listed = alice.get(connections).body["connections"]
        assert len(listed) == 1, listed  # never dropped as stale meanwhile
        beats.update(c["lastHeartbeat"] for c in listed if c["lastHeartbeat"])
        return len(beats) >= 4  # whole seconds, 2 s apart: 6 s and more, STALE_AFTER is 6 s

    wait_for(browser, heartbeats_past_stale_after, 60, "heartbeats past STALE_AFTER")
    tab = next(handle for handle in browser.window_handles if handle != home)
    browser.switch_to.window(tab)
    browser.close()
    browser.switch_to.window(home)
    wait_for(
        browser, lambda _: alice.get(connections).body["connections"] == [], 30, "disconnected"
    )

    def disconnected_by_the_console(_: WebDriver) -> bool:  # a disconnect, not staleness
        audit = console.rest("admin").get("/api/v1/admin/audit?action=disconnect&user=alice")
        return [e["resourceId"] for e in audit.body["entries"]] == [name]

    wait_for(browser, disconnected_by_the_console, 30, "the disconnect in the audit log")


def test_bob_never_sees_alices_sessions(console: Console, browser: WebDriver) -> None:
    alice, bob = console.rest("alice"), console.rest("bob")
    before = rest_session(alice, {"template": TEMPLATE_NAME})
    sign_in(browser, console, "alice")
    wait_for(browser, lambda d: before in shown_rows(d), message="alice sees her session")
    find(browser, "[data-testid=sign-out]").click()
    wait_for(browser, shown("#api-key"))

    sign_in(browser, console, "bob")
    assert shown_rows(browser) == set()
    # While bob watches: alice starts another, then bob one of his own. Bob's arrives live; the
    # stream is in order, so alice's would have arrived before it.
    during = rest_session(alice, {"template": TEMPLATE_NAME})
    his = rest_session(bob, {"template": TEMPLATE_NAME})
    wait_for(browser, lambda d: his in shown_rows(d), message="bob's session, live")
    wait_for(browser, cell_is(his, "phase", "Running"), RUNNING, f"{his} Running")
    assert shown_rows(browser) == {his}
    assert before not in browser.page_source and during not in browser.page_source
    assert {s["id"] for s in bob.get(SESSIONS).body["sessions"]} == {his}


def test_catalog_search_and_pages(console: Console, browser: WebDriver, tmp_path: Path) -> None:
    console.sync_catalog(tmp_path / "templates", MANY)
    sign_in(browser, console, "alice")
    find(browser, "[data-testid=nav-catalog]").click()
    wait_for(browser, lambda d: d.execute_script("return location.hash") == "#/catalog")
    wait_for(browser, shown("[data-testid=catalog-item]"), message="the catalog's items")
    first = wait_for(browser, lambda d: catalog_names(d) or None)
    assert len(first) < len(MANY), "one page should not hold the whole catalog"
    docs_picture(browser, "catalog")

    find(browser, "[data-testid=next-page]").click()
    wait_for(browser, lambda d: (n := catalog_names(d)) and not set(n) & set(first), message="2")
    find(browser, "[data-testid=prev-page]").click()
    wait_for(browser, lambda d: catalog_names(d) == first, message="back on the first page")

    search = find(browser, "input[data-testid=catalog-search]")
    search.send_keys("gimp")
    wait_for(browser, lambda d: catalog_names(d) == ["gimp"], message="only gimp matches")
    item: WebElement = find(browser, '[data-testid=catalog-item][data-name="gimp"]')
    assert "GIMP" in item.text, item.text
    search.clear()
    search.send_keys("no-such-template-anywhere")
    wait_for(browser, gone("[data-testid=catalog-item]"), message="nothing matches")


def test_the_hibernate_warning_appears(console: Console, browser: WebDriver) -> None:
    """An idle session (20 s) is warned about 8 s before it hibernates (``FAST``)."""
    name = rest_session(console.rest("alice"), {"template": TEMPLATE_NAME, "idleTimeout": "20s"})
    sign_in(browser, console, "alice")
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    idle = f"{row_css(name)} [data-testid=idle]"
    wait_for(browser, lambda d: find(d, idle).text.strip(), message="the idle countdown")
    wait_for(browser, shown(f"{row_css(name)} [data-testid=idle-warning]"), 60, "the warning")
    wait_for(browser, cell_is(name, "phase", "Hibernated"), RUNNING, f"{name} hibernated")
    wait_for(browser, gone(f"{row_css(name)} [data-testid=idle-warning]"), 10, "warning gone")


def test_the_session_cookie_is_httponly_and_the_page_has_a_csp(
    console: Console, browser: WebDriver
) -> None:
    page = Client(console.stack.url).get("/")
    assert page.status == 200, page
    headers = {k.lower(): v for k, v in page.headers.items()}
    assert headers.get("content-security-policy"), headers
    assert headers.get("content-type", "").startswith("text/html"), headers

    sign_in(browser, console, "alice")
    cookie = browser.get_cookie(COOKIE)
    assert cookie is not None and cookie["httpOnly"] is True, cookie
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/", cookie
    assert COOKIE not in browser.execute_script("return document.cookie")
    assert console.keys["alice"] not in browser.execute_script(
        "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)"
    )
