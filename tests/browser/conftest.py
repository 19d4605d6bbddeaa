"""Browser tests: Debian's headless Chromium driven by Selenium (``make browser`` installs it).

The fixtures and hooks live in ``browser_testing`` (a plugin module, so a test run elsewhere can
load them with ``-p browser_testing``); importing them here makes them this directory's:

* ``browser``: a Chrome driver for one test, with its console recorded, quit afterwards;
* ``no_console_errors`` (autouse): console errors the test did not take fail it;
* ``pytest_runtest_makereport``: a failing test's screenshot in
  ``.streamspace/screenshots/<test id>.png``, its path printed;
* ``console``: the web console on the real stack (full profile: sessions really run, on kwok
  nodes), with API keys for an admin, alice and bob.
"""

from __future__ import annotations

from browser_testing import browser, no_console_errors, pytest_runtest_makereport
from console_testing import console, stack_env

__all__ = ["browser", "console", "no_console_errors", "pytest_runtest_makereport", "stack_env"]
