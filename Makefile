# The two commands of the README: `make dev` runs the product, `make test` runs the tests.
# Both create the virtual environment and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev services test promtool bench bench-ttft bench-moderation lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[embedded,test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/orchestrator dev

services: $(STAMP)
	$(BIN)/orchestrator dev --services

test: $(STAMP) promtool
	$(BIN)/pytest

# promtool checks and unit-tests the alert rules (tests/test_monitoring.py); it comes with
# Debian's prometheus package (whose server is not started).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
promtool:
	@command -v promtool >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $(SUDO) apt-get install -y --no-install-recommends prometheus \
	  || { $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends prometheus; }; }

bench: $(STAMP)
	$(BIN)/python -m bench

bench-ttft: $(STAMP)
	$(BIN)/python -m bench ttft

bench-moderation: $(STAMP)
	$(BIN)/python -m bench moderation

lint: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[lint]'
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict orchestrator.py core api worker deploy activities workflows bench

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache
