# Two commands on a fresh machine with Python 3.11+ and make: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PORT ?= 50051

.PHONY: run test lint typecheck browser bench bench-perf bench-stubs bench-sessions bench-record bench-reload bench-validation bench-telemetry check container-test docs dist clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(BIN)/emulate --proto protos/ --behaviors behaviors/ --port $(PORT)

check: $(STAMP)
	$(BIN)/emulate check --proto protos/ --behaviors behaviors/

lint: $(STAMP)
	$(BIN)/ruff check emulator tests behaviors bench scripts
	$(BIN)/ruff format --check emulator tests behaviors bench scripts

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck browser
	$(BIN)/python -m pytest

# Headless Chromium (Debian's package) for tests/test_report.py: apt-get when root, else a note.
browser:
	scripts/browser

# The generated parts of docs/ (config keys, variables, flags); tests/test_docs.py checks them.
docs: $(STAMP)
	$(BIN)/python scripts/gen_docs.py

# A wheel and an sdist in dist/, to install into another project (not on a package index yet).
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Every row of issue 17's table as a ratio to a bare grpc.aio server, in one run (bench/issue17.py).
bench-perf: $(STAMP)
	$(BIN)/python bench/issue17.py

# What 1,000 stubs on the called method and 10,000 on other methods cost (bench/stubs.py).
bench-stubs: $(STAMP)
	$(BIN)/python bench/stubs.py

# What 100 sessions of 10 stubs cost a tagged call; an admin ListCalls of 10,000 calls (bench/sessions.py).
bench-sessions: $(STAMP)
	$(BIN)/python bench/sessions.py

# The latency `emulate record` adds in front of a bare grpc.aio server; replay of 1,000 recorded calls against defaults (bench/record.py).
bench-record: $(STAMP)
	$(BIN)/python bench/record.py

# A hot reload of the bundled contracts against a cold `emulate check` of them (bench/reload.py).
bench-reload: $(STAMP)
	$(BIN)/python bench/reload.py

# A unary method whose request has ten buf.validate rules: `validation.requests: enforce` against `off` (bench/validation.py).
bench-validation: $(STAMP)
	$(BIN)/python bench/validation.py

# Full telemetry (traces to a local OTLP receiver, metrics, access log) against none (bench/telemetry.py).
bench-telemetry: $(STAMP)
	$(BIN)/python bench/telemetry.py

# Builds the image with podman on a local Debian base and runs it (root; see the script).
container-test: $(STAMP)
	scripts/container-test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build
