# The two quick-start commands (README.md) and a few helpers.
# Works on a fresh machine with only Python 3.11: everything goes into .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean distclean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(BIN)/.installed  ## the whole pipeline on bundled sample feeds (again: a fresh demo)
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

# What the demo, the tests and builds leave behind; the virtualenvs stay (distclean removes
# them too). Never ./digest.db or ./outbox: with no DIGEST_* set they are your real
# database and emails.
clean:
	rm -rf digest-demo test-artifacts build dist .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -path ./.venv-semantic -prune -o \
		-name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .venv-semantic *.egg-info tests/browser-tools/node_modules
