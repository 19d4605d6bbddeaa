# StreamSpace developer commands. Everything runs from a fresh clone: the virtualenv, the local
# control plane (built from the Go module proxy into ~/.cache/streamspace, or STREAMSPACE_CACHE_DIR)
# and PostgreSQL are created on demand. The control plane is built as a step of its own, with
# progress, before the tests, the benchmarks or the stack start (never inside a test).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STREAMSPACE := $(VENV)/bin/streamspace
PROFILE ?= minimal
PYTEST_ARGS ?=
SCENARIO ?=
# The web console (console/, decision 162): npm installs from the lock file, esbuild builds into
# the facade package, which serves and ships what was built (never committed).
CONSOLE_DIST := facade/streamspace_facade/console_dist
CONSOLE_MODULES := console/node_modules/.installed
CONSOLE_SOURCES := $(wildcard console/src/*) console/build.mjs

.PHONY: help venv controlplane console browser screenshots test lint bench run cluster-up cluster-down cluster-status clean

help:
	@echo "make run            control plane, PostgreSQL, operator and facade (Ctrl-C stops all)"
	@echo "make controlplane   build the local control plane and helm (once, 10-15 min cold; make test does it)"
	@echo "make console        build the web console (npm registry; make test and make run do it)"
	@echo "make browser        Debian's chromium and chromium-driver for the browser tests (apt, as root)"
	@echo "make test           the whole test suite against a real apiserver and PostgreSQL"
	@echo "make screenshots    docs/images/sessions.png and catalog.png, taken by the console's browser tests"
	@echo "make lint           ruff, mypy --strict, import-linter"
	@echo "make bench          benchmarks (SCENARIO=reconcile|idle|sync|api|ws|soak|events|scale); tables + .streamspace/bench/*.json"
	@echo "make cluster-up     local control plane only (PROFILE=minimal|full)"
	@echo "make cluster-down   stop it"

$(VENV)/.installed: pyproject.toml devtools/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -e ./devtools
	touch $@

venv: $(VENV)/.installed

# Only helm when the tests use an existing cluster (STREAMSPACE_TEST_KUBECONFIG).
controlplane: venv
	@if [ -z "$$STREAMSPACE_TEST_KUBECONFIG" ]; then $(STREAMSPACE) dev build --profile full --with helm; \
	else $(STREAMSPACE) dev build --profile none --with helm; fi

$(CONSOLE_MODULES): console/package.json console/package-lock.json
	@command -v npm >/dev/null || { echo "Node.js >= 18 with npm is required to build the web console" >&2; exit 1; }
	npm ci --prefix console --no-audit --no-fund
	touch $@

$(CONSOLE_DIST)/.built: $(CONSOLE_MODULES) $(CONSOLE_SOURCES)
	node console/build.mjs
	touch $@

console: $(CONSOLE_DIST)/.built

# The browser tests (tests/browser) drive Debian's Chromium through Debian's chromedriver; nothing
# is downloaded by Selenium (see tests/browser_testing.py).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "The browser tests need Debian's chromium and chromium-driver (/usr/bin/chromium," >&2; \
		echo "/usr/bin/chromedriver). Install them as root: apt-get install chromium chromium-driver" >&2; \
		exit 1; \
	fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null

test: controlplane console browser
	$(PY) -m pytest $(PYTEST_ARGS)

# The console's pictures in docs/images, taken by its browser tests at the moments they show.
screenshots: controlplane console browser
	mkdir -p docs/images
	STREAMSPACE_SCREENSHOTS=docs/images $(PY) -m pytest tests/browser/test_console_flows.py \
		-k "goes_pending_then_running or catalog_search" $(PYTEST_ARGS)

bench: controlplane
	$(PY) -m bench $(SCENARIO)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

run: venv console
	$(STREAMSPACE) dev run

cluster-up: venv
	$(STREAMSPACE) dev cluster up --profile $(PROFILE)

cluster-down: venv
	$(STREAMSPACE) dev cluster down

cluster-status: venv
	$(STREAMSPACE) dev cluster status

clean: cluster-down
	$(STREAMSPACE) dev postgres down
	rm -rf .streamspace
