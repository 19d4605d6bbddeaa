"""Scheduled sessions in the web console (issue 19, item 4), in real Chromium on the real stack:
the start form sets a schedule, the session's row shows it with the next start and stop the
operator computed, and a cron the server refuses is said on the page and starts nothing."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from test_console_admin import refused
from test_console_flows import ROWS, SESSIONS, choose_template, row_css, shown_rows, sign_in

from browser_testing import find, shown, wait_for
from console_testing import TEMPLATE_NAME, Console

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

WEEKDAYS = {"start": "0 8 * * 1-5", "stop": "0 18 * * 1-5", "timeZone": "Europe/Berlin"}


def fill_schedule(driver: WebDriver, start: str, stop: str, zone: str) -> None:
    find(driver, "[data-testid=schedule-fields] summary").click()
    for key, value in (("start", start), ("stop", stop), ("timeZone", zone)):
        field = wait_for(driver, shown(f"#schedule-{key}"))
        field.clear()
        field.send_keys(value)


def test_a_session_started_with_a_schedule_shows_it_and_its_next_times(
    console: Console, browser: WebDriver
) -> None:
    sign_in(browser, console, "alice")
    choose_template(browser, TEMPLATE_NAME)
    zone = find(browser, "#schedule-timeZone").get_property("value")
    assert zone, "the time zone field offers the browser's own"
    fill_schedule(browser, WEEKDAYS["start"], WEEKDAYS["stop"], WEEKDAYS["timeZone"])
    find(browser, "button[data-testid=start]").click()

    row = wait_for(browser, shown(ROWS), message="the new session's row")
    name = str(row.get_attribute("data-session"))
    alice = console.rest("alice")
    assert alice.get(f"{SESSIONS}/{name}").body["schedule"] == WEEKDAYS
    cell = find(browser, f"{row_css(name)} [data-testid=schedule]")
    assert cell.text == "start 0 8 * * 1-5 · stop 0 18 * * 1-5 (Europe/Berlin)"

    def shown_times(driver: WebDriver) -> tuple[str | None, str | None] | None:
        found = []
        for testid in ("next-start", "next-stop"):
            cells = driver.find_elements(By.CSS_SELECTOR, f"{row_css(name)} [data-testid={testid}]")
            found.append(cells[0].get_attribute("data-at") if cells else None)
        return (found[0], found[1]) if all(found) else None

    times = wait_for(browser, shown_times, message="the next start and stop on the row")
    rest = alice.get(f"{SESSIONS}/{name}").body
    assert times == (rest["nextStart"], rest["nextStop"])


def test_a_schedule_the_server_refuses_is_said_and_starts_nothing(
    console: Console, browser: WebDriver
) -> None:
    sign_in(browser, console, "alice")
    choose_template(browser, TEMPLATE_NAME)
    fill_schedule(browser, "0 25 * * *", "", "Europe/Berlin")
    find(browser, "button[data-testid=start]").click()
    alert = wait_for(browser, shown("[role=alert]"), message="the refusal")
    assert "schedule.start" in alert.text and "Bad hour" in alert.text, alert.text
    refused(browser, 422)
    assert shown_rows(browser) == set()
    assert console.rest("alice").get(SESSIONS).body["total"] == 0
