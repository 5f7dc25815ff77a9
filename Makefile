# MAPPA information-sharing gateway. Two commands set up a fresh machine:
#   make run    virtual environment, install, migrate, development keys, demo agencies, serve
#   make test   test dependencies, then ruff, mypy (strict) and the whole pytest suite
# and `make bench` measures throughput and latency against a bare endpoint.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Independent JOSE implementations used by the interoperability tests (npm `jose`).
NODE_INTEROP := $(dir $(wildcard tests/*/node/package-lock.json tests/*/*/node/package-lock.json))

.PHONY: run test lint typecheck pytest bench install clean node-interop

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/mappa-gateway demo init
	$(BIN)/mappa-gateway serve --host 127.0.0.1 --port 8000

node-interop:
	@for dir in $(NODE_INTEROP); do \
		[ -d $$dir/node_modules ] || (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done

lint: install
	$(BIN)/ruff check gateway policies adapters keys tests benchmarks
	$(BIN)/ruff format --check gateway policies adapters keys tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install node-interop
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
