# MAPPA information-sharing gateway. Two commands set up a fresh machine:
#   make run    virtual environment, install, migrate, development keys, demo agencies, serve
#   make test   test dependencies, then ruff, mypy (strict) and the whole pytest suite
# and `make bench` measures throughput and latency against a bare endpoint, then memory under
# oversized credentials.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Independent JOSE implementations used by the interoperability tests (npm `jose`).
NODE_INTEROP := $(dir $(wildcard tests/*/node/package-lock.json tests/*/*/node/package-lock.json))

.PHONY: run test lint typecheck pytest bench install clean node-interop system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

install: $(STAMP)

# The demo agencies' adapters run beside the gateway; the relay pushes to them over https, each
# trusting only that agency's development CA (made by `demo init` under var/demo/agencies/*/tls/).
run: install
	$(BIN)/mappa-gateway demo init
	$(BIN)/mappa-gateway demo adapters & ADAPTERS=$$!; \
	trap 'kill $$ADAPTERS 2>/dev/null' EXIT INT TERM; \
	$(BIN)/mappa-gateway serve --host 127.0.0.1 --port 8000

# Debian packages the tests use: SoftHSM2 (the PKCS#11 KEK source), Chromium (the IG console's
# end-to-end test, driven by Playwright through /usr/bin/chromium) and HAProxy (the TLS-terminating
# proxy of the mutual-TLS end-to-end test). Installed when missing and we may (root); otherwise
# the tests that need them say so (and fail in CI).
SYSTEM_PACKAGES := softhsm2 chromium haproxy
system-deps:
	@missing=""; for pkg in $(SYSTEM_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing"; \
			(apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
			 (apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null)); \
		else echo "missing system packages:$$missing (tests needing them fail in CI)"; fi; \
	fi

node-interop:
	@for dir in $(NODE_INTEROP); do \
		[ -d $$dir/node_modules ] || (cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
	done

lint: install
	$(BIN)/ruff check gateway policies adapters keys tests benchmarks
	$(BIN)/ruff format --check gateway policies adapters keys tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install system-deps node-interop
	$(BIN)/pytest

test: lint typecheck pytest

bench: install
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/cpu.py
	$(BIN)/python benchmarks/stages.py
	$(BIN)/python benchmarks/soak.py
	$(BIN)/python benchmarks/oversized.py

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
