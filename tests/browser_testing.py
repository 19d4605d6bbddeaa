"""Debian's headless Chromium, driven through Debian's chromedriver by Selenium 4; a pytest plugin.

``tests/browser/conftest.py`` takes its fixtures and hooks from here; ``-p browser_testing``
loads them anywhere else (the harness's own test runs a failing test that way).

Nothing is downloaded: the driver and the browser are given by path (``make browser`` installs
them), so Selenium Manager is never asked for one, and ``SE_OFFLINE`` keeps it offline should
anything call it. Chromium starts with the flags this closed network needs (no background
networking, component updates or sync, which would otherwise try to reach Google's hosts at
every start), a fresh profile directory per browser and a fixed window size, so screenshots of
the same page come out the same.

* ``browser``: a Chrome driver for one test, quit afterwards.
* The browser's console is recorded (``goog:loggingPrefs``); ``console_errors(driver)`` takes the
  SEVERE entries so far. Errors that no test took fail the test that left them.
* A failing browser test leaves a screenshot in ``.streamspace/screenshots/<test id>.png`` (under
  the rootdir); its path is printed with the failure.
* Waiting is ``wait_for`` (a WebDriverWait with a deadline), never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--window-size={WINDOW[0]},{WINDOW[1]}",
)
WAIT = 30.0
"""Default deadline of ``wait_for``, seconds."""
SCREENSHOTS = Path(".streamspace") / "screenshots"
"""Where failing tests leave their screenshot, under the rootdir."""

T = TypeVar("T")
DRIVER = pytest.StashKey[WebDriver]()
LEFT_ERRORS = pytest.StashKey[list[dict[str, Any]]]()


def require_browser() -> None:
    """Fail (not skip) without the browser: the suite promises these tests run."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: `make browser` installs Debian's chromium and "
            "chromium-driver (as root)",
            pytrace=False,
        )


def start_chrome(profile: Path) -> WebDriver:
    """Chromium with a fresh profile in ``profile``, its console recorded."""
    require_browser()
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager, should anything call it
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_page_load_timeout(WAIT)
    return driver


def console_errors(driver: WebDriver) -> list[dict[str, Any]]:
    """The SEVERE entries of the browser's console since the last call (reading takes them)."""
    entries: list[dict[str, Any]] = driver.get_log("browser")  # type: ignore[attr-defined]
    return [entry for entry in entries if entry.get("level") == "SEVERE"]


def wait_for(
    driver: WebDriver,
    condition: Callable[[WebDriver], T | None],
    timeout: float = WAIT,
    message: str = "",
) -> T:
    """``condition(driver)`` once it is truthy; TimeoutException after ``timeout`` seconds."""
    what = message or getattr(condition, "__name__", "a condition")
    waited = WebDriverWait(driver, timeout, poll_frequency=0.1).until(
        condition, f"{what}: not within {timeout:g} s (at {driver.current_url})"
    )
    assert waited is not None  # until() returns only a truthy value
    return waited


def find(driver: WebDriver, css: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, css)


def shown(css: str) -> Callable[[WebDriver], WebElement | None]:
    """A condition: the first element matching ``css`` once it is displayed."""

    def condition(driver: WebDriver) -> WebElement | None:
        for element in driver.find_elements(By.CSS_SELECTOR, css):
            if element.is_displayed():
                return element
        return None

    condition.__name__ = f"shown({css!r})"
    return condition


def gone(css: str) -> Callable[[WebDriver], bool]:
    """A condition: no element matches ``css``."""

    def condition(driver: WebDriver) -> bool:
        return not driver.find_elements(By.CSS_SELECTOR, css)

    condition.__name__ = f"gone({css!r})"
    return condition


def text_is(css: str, expected: str) -> Callable[[WebDriver], bool]:
    """A condition: some element matching ``css`` has exactly the text ``expected``."""

    def condition(driver: WebDriver) -> bool:
        try:
            return any(
                e.text.strip() == expected for e in driver.find_elements(By.CSS_SELECTOR, css)
            )
        except WebDriverException:  # re-rendered between finding and reading: look again
            return False

    condition.__name__ = f"text_is({css!r}, {expected!r})"
    return condition


def screenshot_path(config: pytest.Config, nodeid: str) -> Path:
    """``.streamspace/screenshots/<test id>.png`` under the rootdir, the id made a file name."""
    name = re.sub(r"[^A-Za-z0-9_.\[\]-]+", "_", nodeid).strip("_")
    return config.rootpath / SCREENSHOTS / f"{name}.png"


def save_screenshot(driver: WebDriver, path: Path) -> Path | None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path if driver.save_screenshot(str(path)) else None
    except WebDriverException:  # the browser is gone: nothing to show
        return None


def docs_picture(driver: WebDriver, name: str) -> Path | None:
    """Save ``<name>.png`` into ``$STREAMSPACE_SCREENSHOTS`` when set (``make screenshots``)."""
    directory = os.environ.get("STREAMSPACE_SCREENSHOTS")
    if not directory:
        return None
    return save_screenshot(driver, Path(directory) / f"{name}.png")


# -- the plugin --------------------------------------------------------------------------------


@pytest.fixture
def browser(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebDriver]:
    """A headless Chromium for this test (a fresh profile), quit afterwards.

    Console errors the test did not take with ``console_errors`` are recorded at teardown (with
    a screenshot of the page that logged them) for ``no_console_errors`` to fail the test.
    """
    profile = Path(tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path_factory.getbasetemp()))
    screenshot_path(request.config, request.node.nodeid).unlink(missing_ok=True)  # an old run's
    driver = start_chrome(profile)
    request.node.stash[DRIVER] = driver
    try:
        yield driver
        left = console_errors(driver)
        if left:
            request.node.stash[LEFT_ERRORS] = left
            save_screenshot(driver, screenshot_path(request.config, request.node.nodeid))
    finally:
        del request.node.stash[DRIVER]
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_console_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a browser test whose page logged errors to the console that the test did not take.

    Set up before ``browser`` (autouse first), so torn down after it has recorded them.
    """
    yield
    left = request.node.stash.get(LEFT_ERRORS, [])
    if left:
        shot = screenshot_path(request.config, request.node.nodeid)
        lines = "\n".join(f"  {e.get('source', '')}: {e.get('message', '')}" for e in left)
        pytest.fail(f"the browser's console has errors (screenshot {shot}):\n{lines}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing browser test: a screenshot of its page, its path printed with the failure."""
    report = yield
    if report.failed:
        path = screenshot_path(item.config, item.nodeid)
        driver = item.stash.get(DRIVER, None)
        saved = save_screenshot(driver, path) if driver is not None else None
        if saved is None and path.exists() and report.when == "teardown":
            saved = path  # taken by ``browser`` before it quit (console errors)
        if saved is not None:
            report.sections.append(("browser screenshot", str(saved)))
            terminal = item.config.pluginmanager.get_plugin("terminalreporter")
            if terminal is not None:
                terminal.write_line(f"\nscreenshot of {item.nodeid}: {saved}")
    return report
