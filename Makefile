# The README's first two commands: `make run` starts the gateway locally, `make test` runs every check.
# `make test-fast` is the inner loop: in-process unit tests only (no processes, no gcloud), in seconds.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast setup lint fmt bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

.venv-checkov/.installed: requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt
	touch $@

tests/node/node_modules/.installed: tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $@

tests/node_claude/node_modules/.installed: tests/node_claude/package.json tests/node_claude/package-lock.json
	npm ci --prefix tests/node_claude --no-audit --no-fund --loglevel=error
	touch $@

tests/node_pi/node_modules/.installed: tests/node_pi/package.json tests/node_pi/package-lock.json
	npm ci --prefix tests/node_pi --no-audit --no-fund --loglevel=error
	touch $@

# The hashicorp/google provider schema for tests/test_infra.py, from the npm package pinned (version and
# sha512) in the lock file; kept in the venv, so `make clean` drops it with everything else installed.
$(VENV)/tf-schema/.installed: tests/tools/google-provider.lock.json tests/tools/tf_schema.py $(BIN)/.installed
	$(BIN)/python -m tests.tools.tf_schema fetch
	touch $@

setup: $(BIN)/.installed .venv-checkov/.installed tests/node/node_modules/.installed tests/node_claude/node_modules/.installed \
	tests/node_pi/node_modules/.installed $(VENV)/tf-schema/.installed

run: $(BIN)/.installed
	scripts/dev-run

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

fmt: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	terraform fmt -recursive infra

test: setup lint
	$(BIN)/python -m pytest

# pytest caches its assertion-rewritten test modules as bytecode; where PYTHONDONTWRITEBYTECODE is set (as on
# some dev images) every run rewrites all of them again, about half of a fast run. An empty value turns it off.
test-fast: $(BIN)/.installed
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -p tests.tools.fast -m "not e2e and not node and not slow"

bench: $(BIN)/.installed
	bash bench/run

clean:
	rm -rf $(VENV) .venv-checkov tests/node/node_modules tests/node_claude/node_modules tests/node_pi/node_modules .pytest_cache .ruff_cache
