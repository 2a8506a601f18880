# fleetconf: `make demo` runs the stack, `make test` runs the suite.
# Both create .venv and install the pinned versions from constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck openapi mutation screenshots venv clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fleetconf needs Python 3.11 or newer; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# Two processes (pytest-xdist), each test file on one of them: most of the suite waits on
# real services and processes, so two halves take about half the time on two cores.
# Files go out in collection order, the slow folders first (tests/conftest.py), not
# xdist's default of the files with the most tests first, which left the few long
# end-to-end tests for last, on one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --durations=30

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint --failure-threshold style docker/Dockerfile.*

typecheck: $(STAMP)
	$(BIN)/mypy

openapi: $(STAMP)
	$(BIN)/python scripts/write_openapi.py

# Mutation testing of the critical modules (slow; not part of test or CI): writes
# tests/results/mutation.json and .md. TARGETS="etags backoff" runs only those.
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(TARGETS)

# The README's picture of the console: the browser test on real processes (headless
# Chromium, Debian's package) copies its fleet view to docs/images/console-fleet.png.
screenshots: $(STAMP)
	CI=true CONSOLE_README_IMAGES=$(CURDIR)/docs/images $(BIN)/python -m pytest -q \
		-p no:cacheprovider tests/e2e/test_console_browser.py -k viewer_and_admin

clean:
	rm -rf $(VENV) build *.egg-info
