"""The browser harness itself: Chromium through the ``browser`` fixture on a loopback page, the
console capture, and the screenshot a failing browser test leaves."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from browser_testing import WINDOW, console_errors, find, shown, text_is, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

TESTS = Path(__file__).resolve().parents[1]
PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>harness</title></head>
<body>
<button id="go">Go</button> <button id="shout">Shout</button>
<p data-testid="out">idle</p>
<script>
  // the DOM changes a little later than the click, as a page that fetches would
  document.getElementById("go").addEventListener("click", () => {
    setTimeout(() => {
      const item = document.createElement("li");
      item.dataset.testid = "added";
      item.textContent = "added by the click";
      document.body.append(item);
      document.querySelector("[data-testid=out]").textContent = "clicked";
    }, 300);
  });
  document.getElementById("shout").addEventListener("click", () => {
    console.error("shouted on purpose");
  });
</script>
</body></html>
"""


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = self.path == "/"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE) if found else 0))
        self.end_headers()
        if found:
            self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    """The page above, served on loopback by a server of this test."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, name="page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_a_click_changes_the_page(browser: WebDriver, page_url: str) -> None:
    browser.get(page_url)
    assert browser.title == "harness"
    assert browser.get_window_size() == {"width": WINDOW[0], "height": WINDOW[1]}
    assert browser.execute_script("return navigator.webdriver") is True
    assert find(browser, "[data-testid=out]").text == "idle"
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=added]")
    find(browser, "#go").click()
    added = wait_for(browser, shown("[data-testid=added]"), timeout=10)
    assert added.text == "added by the click"
    assert wait_for(browser, text_is("[data-testid=out]", "clicked"), timeout=10)
    assert console_errors(browser) == []


def test_console_errors_are_captured(browser: WebDriver, page_url: str) -> None:
    browser.get(page_url)
    find(browser, "#shout").click()
    errors = wait_for(browser, console_errors, timeout=10)
    assert len(errors) == 1 and "shouted on purpose" in errors[0]["message"], errors
    assert errors[0]["level"] == "SEVERE"
    assert console_errors(browser) == []  # taken: this test passes


FAILING = """
from browser_testing import find

def test_fails_on_a_page(browser):
    browser.get("data:text/html,<title>t</title><h1 id=h>a page that fails its test</h1>")
    assert find(browser, "#h").text == "something else"

def test_leaves_a_console_error(browser):
    browser.get("data:text/html,<title>t</title><p>fine</p>")
    browser.execute_script("console.error('left behind')")

def test_passes(browser):
    browser.get("data:text/html,<title>t</title><p>fine</p>")
"""


def test_a_failing_browser_test_leaves_a_screenshot(tmp_path: Path) -> None:
    """Run a small test file with the plugin in a pytest of its own, and look at what it left."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_failing.py").write_text(FAILING)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-p", "browser_testing", "-p", "no:cacheprovider",
            "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), "-q",
            str(tmp_path / "test_failing.py"),
        ],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 failed, 2 passed, 1 error" in out, out
    assert "left behind" in out, out
    shots = tmp_path / ".streamspace" / "screenshots"
    failed = shots / "test_failing.py_test_fails_on_a_page.png"
    left = shots / "test_failing.py_test_leaves_a_console_error.png"
    for shot in (failed, left):
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", shot
        assert str(shot) in out, out
    assert sorted(p.name for p in shots.iterdir()) == sorted([failed.name, left.name])
