# The two commands of the README: `make dev` runs the product, `make test` runs the tests.
# Both create the virtual environment and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev services test bench bench-ttft bench-moderation lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[embedded,test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/orchestrator dev

services: $(STAMP)
	$(BIN)/orchestrator dev --services

test: $(STAMP)
	$(BIN)/pytest

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
