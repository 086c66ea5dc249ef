# The two commands of the README: `make dev` runs the product, `make test` runs the tests.
# Both create the virtual environment and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev services test test-unit promtool bench bench-ttft bench-load bench-moderation bench-cost heads lint lock clean slm-rebuild

# Exact versions from the lockfile (requirements-dev.lock: the product, the embedded servers,
# the test and lint tools), then the project itself; `make lock` renews both lockfiles.
# llama-cpp-python comes first, built portably (no -march=native, every x86-64 CPU variant)
# and cached under a key of its version, flags and compiler (deploy/llama_build.py).
$(STAMP): pyproject.toml requirements-dev.lock deploy/llama_build.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python deploy/llama_build.py --python $(BIN)/python --lock requirements-dev.lock
	$(BIN)/python -m pip install -r requirements-dev.lock
	$(BIN)/python -m pip install --no-deps -e .
	@$(BIN)/python -m pip check || { echo "requirements-dev.lock is behind pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

# requirements.lock (what the images install) and requirements-dev.lock, from pyproject.toml.
LOCK := $(BIN)/uv pip compile pyproject.toml --python-version 3.11 --python-platform x86_64-unknown-linux-gnu -q
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q 'uv>=0.13.9'
	$(LOCK) -o requirements.lock
	$(LOCK) --extra embedded --extra test --extra lint -o requirements-dev.lock

# Build llama.cpp again (same portable flags, cache entry replaced) and reinstall it.
slm-rebuild: $(STAMP)
	$(BIN)/python deploy/llama_build.py --python $(BIN)/python --lock requirements-dev.lock --rebuild

dev: $(STAMP)
	$(BIN)/orchestrator dev

services: $(STAMP)
	$(BIN)/orchestrator dev --services

test: $(STAMP) promtool
	$(BIN)/pytest

# The fast lane: every test that starts no server (tests/conftest.py marks the others
# `servers`): the engine, codec, schemas, replay of committed histories, configuration.
test-unit: $(STAMP) promtool
	$(BIN)/pytest -m "not servers" -n auto -p no:cacheprovider

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

bench-load: $(STAMP)
	$(BIN)/python -m bench load

bench-moderation: $(STAMP)
	$(BIN)/python -m bench moderation

bench-cost: $(STAMP)
	$(BIN)/python -m bench cost

# Train the moderation classifier's heads again from classifier/data/ and write them, with
# the thresholds they were chosen with, into the bundled policy (a new constitution hash).
heads: $(STAMP)
	$(BIN)/python -m classifier.train --write-policy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict orchestrator.py core api worker deploy activities workflows bench chat classifier

clean:
	rm -rf $(VENV) .orchestrator .pytest_cache
