"""The console's line-mode terminal, in real Chromium against the real stack (issue 19, item 7).

The session's pod runs on a kwok node, and kwok's exec runs the shell on this machine
(``streamspace_dev.podexec``), so what is typed into the page really reaches a shell through the
facade's ``/api/v1/ws/exec`` and the API server's ``pods/exec``. The page holds to the hooks of
decision 204: a ``Terminal`` button on the row, ``terminal-panel`` with ``terminal-output``
(spans ``data-stream`` stdout, stderr, input), ``#terminal-input``, ``terminal-state``,
``terminal-exit``, ``terminal-reopen`` and ``terminal-close``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from kubernetes import client
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from test_console_flows import RUNNING, SESSIONS, act, cell_is, rest_session, sign_in
from test_console_sharing import enabled, sign_out

from browser_testing import console_errors, find, gone, shown, text_is, wait_for
from console_testing import FAST, TEMPLATE_NAME, Console
from streamspace_dev.process import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

OUTPUT = "pre[data-testid=terminal-output]"
STATE = "[data-testid=terminal-state]"
INPUT = "#terminal-input"


@pytest.fixture
def stack_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The console's short idle checks (``FAST``), plus what a test asks for by indirect
    parametrization."""
    return {**FAST, **getattr(request, "param", {})}


def running_session(console: Console, api: client.ApiClient) -> str:
    """alice's session, Running with its pod Running on a kwok node (exec needs the pod)."""
    alice = console.rest("alice")
    name = rest_session(alice, {"template": TEMPLATE_NAME})
    view: dict[str, Any] = {}

    def running() -> bool:
        view.update(alice.get(f"{SESSIONS}/{name}").body)
        return view.get("phase") == "Running" and bool(view.get("podName"))

    assert wait_until(running, RUNNING), view
    core = client.CoreV1Api(api)
    namespace = console.stack.namespace
    assert wait_until(
        lambda: core.read_namespaced_pod(view["podName"], namespace).status.phase == "Running",
        RUNNING,
    ), f"pod {view['podName']} not Running"
    return name


def stream_text(kind: str) -> Any:
    """A condition's reader: the text of the output's ``kind`` spans, joined."""

    def read(driver: WebDriver) -> str:
        spans = driver.find_elements(By.CSS_SELECTOR, f"{OUTPUT} span[data-stream={kind}]")
        return "".join(str(s.get_attribute("textContent")) for s in spans)

    return read


def holds(kind: str, part: str) -> Any:
    def condition(driver: WebDriver) -> bool:
        return part in stream_text(kind)(driver)

    condition.__name__ = f"{kind} holds {part!r}"
    return condition


OPEN_BY_HAND = """
const done = arguments[arguments.length - 1];
const url = `ws://${location.host}/api/v1/ws/exec/${arguments[0]}/${arguments[1]}?tty=false`;
window.__byHand = new WebSocket(url);
window.__byHand.onopen = () => done({ opened: true, code: null });
window.__byHand.onclose = (e) => done({ opened: false, code: e.code });
"""


def open_by_hand(driver: WebDriver, namespace: str, pod: str) -> dict[str, Any]:
    """A terminal socket opened by the page's script (the caller's cookie), outside the
    console's controls, kept in ``window.__byHand``: how it went first (opened, or its close
    code)."""
    outcome: dict[str, Any] = driver.execute_async_script(OPEN_BY_HAND, namespace, pod)
    return outcome


def state_text(driver: WebDriver) -> str:
    """The terminal's state badge ("" while the panel is being re-rendered)."""
    try:
        return str(find(driver, STATE).text).strip()
    except WebDriverException:
        return ""


def open_terminal(driver: WebDriver, name: str) -> None:
    wait_for(driver, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    act(driver, name, "terminal")
    wait_for(driver, shown("[data-testid=terminal-panel]"), message="the terminal panel")
    wait_for(driver, text_is(STATE, "live"), message="the terminal's socket open")


def type_line(driver: WebDriver, line: str) -> None:
    field = wait_for(driver, lambda d: (f := find(d, INPUT)).is_enabled() and f)
    field.send_keys(line, Keys.ENTER)


def test_a_line_mode_shell_in_alices_session(
    console: Console, browser: WebDriver, full_cluster: Any, api: client.ApiClient
) -> None:
    assert full_cluster.plane is not None, "the shell is run by the local control plane's kwok"
    name = running_session(console, api)
    sign_in(browser, console, "alice")
    open_terminal(browser, name)
    labels = browser.execute_script(
        "return [...arguments[0].labels].map(l => l.textContent.trim())", find(browser, INPUT)
    )
    assert labels == ["Command line"], labels
    assert find(browser, OUTPUT).get_attribute("aria-live") == "polite"

    type_line(browser, "echo hello-$((6*7))")
    wait_for(browser, holds("stdout", "hello-42"), message="the shell's answer")
    assert "echo hello-$((6*7))" in stream_text("input")(browser), "the line typed, echoed"
    assert find(browser, INPUT).get_attribute("value") == "", "the line cleared once sent"

    # stderr apart; escape sequences stripped (the text shows, the ESC bytes do not)
    type_line(browser, "echo oops >&2; printf '\\033[1;31mred\\033[0m done\\n'")
    wait_for(browser, holds("stderr", "oops"), message="stderr shown apart")
    wait_for(browser, holds("stdout", "red done"), message="the coloured line, plain")
    assert "oops" not in stream_text("stdout")(browser)
    assert "\x1b" not in str(find(browser, OUTPUT).get_attribute("textContent"))
    stderr_colour = browser.execute_script(
        "return getComputedStyle(arguments[0]).color",
        find(browser, f"{OUTPUT} span[data-stream=stderr]"),
    )
    stdout_colour = browser.execute_script(
        "return getComputedStyle(arguments[0]).color",
        find(browser, f"{OUTPUT} span[data-stream=stdout]"),
    )
    assert stderr_colour != stdout_colour, "stderr is styled apart"

    # what the pod prints is text, never markup
    type_line(browser, "echo '<b id=pwned>bold?</b>'")
    wait_for(browser, holds("stdout", "<b id=pwned>bold?</b>"), message="markup shown as text")
    assert not browser.find_elements(By.CSS_SELECTOR, "#pwned")

    # Up recalls the last line typed, Down goes back to an empty line
    find(browser, INPUT).send_keys(Keys.ARROW_UP)
    wait_for(browser, lambda d: "pwned" in str(find(d, INPUT).get_attribute("value")))
    find(browser, INPUT).send_keys(Keys.ARROW_DOWN)
    wait_for(browser, lambda d: find(d, INPUT).get_attribute("value") == "", message="Down")

    # the newest MAX_LINES (2000) lines are kept
    type_line(browser, "seq 2500")
    wait_for(browser, holds("stdout", "\n2500\n"), message="seq's last line")
    shown_text = str(find(browser, OUTPUT).get_attribute("textContent"))
    assert shown_text.count("\n") == 2000, shown_text.count("\n")
    assert shown_text.startswith("501\n"), shown_text[:40]

    type_line(browser, "exit 3")
    wait_for(browser, text_is(STATE, "exited (3)"), message="the exit code")
    assert "code 3" in find(browser, "[data-testid=terminal-exit]").text
    assert not find(browser, INPUT).is_enabled(), "no input once the shell exited"

    # opened again: a new shell
    find(browser, "[data-testid=terminal-reopen]").click()
    wait_for(browser, text_is(STATE, "live"), message="a second terminal")
    assert stream_text("stdout")(browser) == "", "a new terminal starts empty"
    type_line(browser, "echo again")
    wait_for(browser, holds("stdout", "again"))
    find(browser, "[data-testid=terminal-close]").click()
    wait_for(browser, gone("[data-testid=terminal-panel]"), message="the panel closed")


def test_ctrl_d_ends_an_admins_terminal_and_a_share_gives_none(
    console: Console, browser: WebDriver, api: client.ApiClient
) -> None:
    name = running_session(console, api)
    shared = console.rest("alice").post(
        f"{SESSIONS}/{name}/shares", {"user": "bob", "access": "control"}
    )
    assert shared.status == 200, shared

    # the admin is offered a terminal on alice's row; Ctrl-D ends it
    sign_in(browser, console, "admin")
    open_terminal(browser, name)
    type_line(browser, "echo admin-was-here")
    wait_for(browser, holds("stdout", "admin-was-here"))
    find(browser, INPUT).send_keys(Keys.CONTROL, "d")
    wait_for(browser, text_is(STATE, "ended: you closed the terminal"), message="Ctrl-D")
    assert not find(browser, INPUT).is_enabled()
    assert find(browser, "[data-testid=terminal-reopen]").is_displayed()
    sign_out(browser)

    # bob may control the desktop but gets no terminal: no button, and the socket opened by
    # hand with his cookie is refused before the upgrade (404, a console error taken here)
    sign_in(browser, console, "bob")
    wait_for(browser, cell_is(name, "access", "control"), message="alice's session, for bob")
    assert enabled(browser, name, "connect")
    assert not enabled(browser, name, "terminal")
    pod = console.rest("bob").get(f"{SESSIONS}/{name}").body["podName"]
    outcome = open_by_hand(browser, console.stack.namespace, pod)
    assert outcome == {"opened": False, "code": 1006}, outcome
    errors = console_errors(browser)
    assert errors and all("404" in e.get("message", "") for e in errors), errors


@pytest.mark.parametrize("stack_env", [{"TERMINAL_IDLE_TIMEOUT": "3s"}], indirect=True)
def test_an_idle_terminal_says_why_it_closed(
    console: Console, browser: WebDriver, api: client.ApiClient
) -> None:
    name = running_session(console, api)
    sign_in(browser, console, "alice")
    open_terminal(browser, name)
    type_line(browser, "echo still-here")
    wait_for(browser, holds("stdout", "still-here"))
    # no more input: the facade closes it with 4408 after TERMINAL_IDLE_TIMEOUT
    wait_for(
        browser,
        text_is(STATE, "closed: no input for too long (TERMINAL_IDLE_TIMEOUT)"),
        30,
        "the idle close explained",
    )
    assert not find(browser, INPUT).is_enabled()
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid=terminal-exit]")
    find(browser, "[data-testid=terminal-reopen]").click()
    wait_for(browser, text_is(STATE, "live"), message="opened again after the idle close")


@pytest.mark.parametrize("stack_env", [{"TERMINAL_MAX_PER_USER": "1"}], indirect=True)
def test_a_terminal_past_the_users_limit_is_refused_and_says_why(
    console: Console, browser: WebDriver, api: client.ApiClient
) -> None:
    name = running_session(console, api)
    pod = console.rest("alice").get(f"{SESSIONS}/{name}").body["podName"]
    sign_in(browser, console, "alice")
    # alice's one terminal, held open in the page by hand
    held = open_by_hand(browser, console.stack.namespace, pod)
    assert held == {"opened": True, "code": None}, held
    wait_for(browser, cell_is(name, "phase", "Running"), RUNNING, f"{name} Running")
    act(browser, name, "terminal")
    wait_for(
        browser,
        lambda d: (
            state_text(d).startswith("refused: ") and "TERMINAL_MAX_PER_USER" in state_text(d)
        ),
        message="the refusal explained",
    )
    errors = console_errors(browser)
    assert errors and all("429" in e.get("message", "") for e in errors), errors

    # the slot back once the facade has let the other go (a moment after its close): opened
    # again until it is live
    browser.execute_script("window.__byHand.close()")

    def live_after_reopening(driver: WebDriver) -> bool:
        state = state_text(driver)
        if state.startswith("refused: "):
            with contextlib.suppress(WebDriverException):  # re-rendered meanwhile: next poll
                find(driver, "[data-testid=terminal-reopen]").click()
        return state == "live"

    wait_for(browser, live_after_reopening, message="a terminal once the other closed")
    late = console_errors(browser)  # refusals while the slot was still held
    assert all("429" in e.get("message", "") for e in late), late
