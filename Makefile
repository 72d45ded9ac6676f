# The few commands a newcomer needs. Each sets up what it needs from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export MPLCONFIGDIR ?= $(CURDIR)/.venv/mplconfig

.PHONY: help setup services demo test lint format bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(STAMP)  ## create .venv and install aura-ops with its dependencies

# Debian packages the tests need: Prometheus and Alertmanager processes, a PostgreSQL server
# with pg_stat_statements (the embedded pgserver build lacks it).
# Debian's chromium drives the JupyterLab browser test (Playwright never downloads a browser).
APT_PACKAGES := prometheus prometheus-alertmanager postgresql chromium

services:  ## install Prometheus, Alertmanager and PostgreSQL (Debian packages; needs root)
	@if command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null \
	    && ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 && command -v chromium >/dev/null; then \
	  echo "$(APT_PACKAGES) present"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $(APT_PACKAGES) >/dev/null; \
	else \
	  echo "$(APT_PACKAGES) missing: run 'sudo make services' (tests that need them skip)"; \
	fi

demo: setup  ## break the sandbox and watch the high-error-rate runbook find the cause
	$(BIN)/aura-ops drill high-error-rate

test: setup services  ## install everything and run the test suite
	$(BIN)/pytest

lint: setup  ## ruff on code and notebooks; notebooks must be committed without outputs
	$(BIN)/ruff check aura_ops tests notebooks
	$(BIN)/nbstripout --keep-id --verify notebooks/*.ipynb

format: setup  ## format code, strip notebook outputs
	$(BIN)/ruff format aura_ops tests
	$(BIN)/nbstripout --keep-id --extra-keys "metadata.papermill cell.metadata.papermill" notebooks/*.ipynb

bench: setup  ## benchmarks: alert to report, logs (100 MB, 1 GB; BENCH_LOGS="--4g" adds 4 GB), alert storm (~20 min)
	@$(BIN)/python -c "import duckdb" 2>/dev/null || $(BIN)/pip install --quiet duckdb
	$(BIN)/python benchmarks/bench_alert.py
	$(BIN)/python benchmarks/bench_logs.py $(BENCH_LOGS)
	$(BIN)/python benchmarks/bench_storm.py

clean:  ## remove the virtualenv and outputs
	rm -rf $(VENV) outputs .pytest_cache
