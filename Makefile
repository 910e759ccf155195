# One task runner, the same verbs locally and in CI. Every target sets up what it needs
# (Debian packages, venv, front-end build) and is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := .make
export CIM_HOME ?= $(CURDIR)/.cim

.PHONY: demo test check lint typecheck deadcode bench serve sysdeps venv web db clean help

help:
	@echo "make demo   set everything up, load the demo county, serve http://127.0.0.1:8000"
	@echo "make test   set everything up, run the static checks, then the test suite (real PostGIS, HTTP, Chromium)"
	@echo "make check  the static checks alone: ruff, mypy, vulture (docs/contributing.md)"
	@echo "make lint   ruff"
	@echo "make bench  benchmarks against the peers (see bench/README.md)"
	@echo "make serve  start the server on the existing database"

sysdeps: $(STAMP)/sysdeps
$(STAMP)/sysdeps: scripts/sysdeps.sh
	@mkdir -p $(STAMP)
	bash scripts/sysdeps.sh
	@touch $@

venv: $(STAMP)/venv
$(STAMP)/venv: pyproject.toml
	@mkdir -p $(STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

# The web map: MapLibre GL JS and CesiumJS from npm, bundled into web/dist.
web: $(STAMP)/web
$(STAMP)/web: $(wildcard web/package.json web/package-lock.json web/src/*.js web/src/*/*.js web/src/*.css web/*.html web/*.svg web/build.mjs)
	@mkdir -p $(STAMP)
	if [ -f web/package.json ]; then \
	  cd web && (npm ci --no-audit --no-fund || npm install --no-audit --no-fund) && npm run build; fi
	@touch $@

db: sysdeps venv
	$(BIN)/cim db up

# The static checks first: a failing one fails the target before the (long) test suite runs.
test: check sysdeps web
	@set +e; $(BIN)/python -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is broken" >&2; exit 1; fi; exit $$rc

demo: sysdeps venv web db
	CIM_PUBLIC_READ=true bash scripts/demo.sh

serve: venv
	CIM_PUBLIC_READ=$${CIM_PUBLIC_READ:-true} $(BIN)/cim serve

# Static checks; their configuration is in pyproject.toml ([tool.ruff], [tool.mypy], [tool.vulture]).
check: lint typecheck deadcode

lint: venv
	$(BIN)/ruff check cim layers ingest tiles cimplus api batch demo tests bench

typecheck: venv
	$(BIN)/mypy

deadcode: venv
	$(BIN)/vulture

bench: sysdeps venv
	bash bench/run.sh

clean:
	-$(BIN)/cim db down
	rm -rf $(STAMP) $(VENV) web/dist web/node_modules
