# The two commands: `make run` (embedded default, serves on 127.0.0.1:8000) and
# `make test` (linters and the whole suite on PostgreSQL and Redis).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Settings for commands make runs outside pytest (pytest takes its own from pytest.ini).
CHECK_ENV := DJANGO_ENV_FILE= DEBUG=false SECRET_KEY=makemigrations-check-only

.PHONY: run test install install-dev services pdf-libs lint audit format migrate seed clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# First run only: a private SECRET_KEY for this checkout, and DEBUG for the local server.
.env:
	@echo "Writing .env with a new random SECRET_KEY (embedded default, DEBUG on)"
	@printf 'DEBUG=true\nSECRET_KEY=%s\n' "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" > .env

migrate: $(VENV)/.installed .env
	$(BIN)/python manage.py migrate --noinput --verbosity 0

seed: migrate
	$(BIN)/python manage.py seed_demo

run: pdf-libs seed
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

services:
	@bash scripts/ensure_services.sh
	@bash scripts/ensure_browser.sh
	@bash scripts/ensure_pdf_libs.sh

# Invoice PDFs: WeasyPrint loads Pango, HarfBuzz and fontconfig from the system, not pip.
pdf-libs:
	@bash scripts/ensure_pdf_libs.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(CHECK_ENV) $(BIN)/python manage.py makemigrations --check --dry-run

# Known vulnerabilities in what is installed (scripts/audit_dependencies.sh says what it
# could and could not check; AUDIT_STRICT=1 fails when the advisory service is unreachable).
audit: $(VENV)/.installed-dev
	@BIN=$(BIN) bash scripts/audit_dependencies.sh

format: $(VENV)/.installed-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# pytest exits 5 when it collected nothing; that is a failure here, never a pass.
test: $(VENV)/.installed-dev services lint audit
	@set +e; $(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing the run"; exit 1; fi; \
	exit $$rc

# Benchmarks (bench/run.py): the production set on this machine under wrk; writes
# bench/RESULTS.md. Needs PostgreSQL and Redis (started if stopped); installs wrk (Debian)
# and py-spy (requirements-bench.txt) when missing. BENCH_ARGS=--quick for a short run.
$(VENV)/.installed-bench: requirements.txt requirements-bench.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@ $(VENV)/.installed

bench: $(VENV)/.installed-bench
	@bash scripts/ensure_services.sh
	@bash scripts/ensure_wrk.sh
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache staticfiles
