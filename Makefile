# The two quick-start commands (README.md) and a few helpers.
# Works on a fresh machine with only Python 3.11: everything goes into .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.installed  ## run the whole pipeline on bundled sample feeds, no servers needed
	$(BIN)/digest demo

test: lint  ## the checks, then the whole test suite (needs PostgreSQL and Redis on localhost)
	$(BIN)/pytest

lint: $(BIN)/.installed  ## ruff, the layer contracts (import-linter) and mypy
	$(BIN)/ruff check digest workers tests bench
	$(BIN)/ruff format --check digest workers tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/mypy

bench: $(BIN)/.installed
	$(BIN)/python bench/matching.py
	$(BIN)/python bench/render.py

clean:
	rm -rf $(VENV) .venv-semantic digest-demo outbox digest.db test-artifacts
