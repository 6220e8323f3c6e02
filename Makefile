# flowjobs — `make help` lists every target.
VENV ?= .venv
PY := $(VENV)/bin/python
PEERS_VENV ?= .venv-peers
FLOWJOBS := $(VENV)/bin/flowjobs
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install postgres chromium lint test test-faults demo bench bench-peers bench-growth dist dist-check clean

help: ## List every target with one line
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	@# compat: a plain path in a .pth file; the other modes add an import hook (~25 ms per start).
	@# setuptools calls compat transitional: once it is gone, the default editable install serves.
	$(VENV)/bin/pip install -q -e ".[test]" --config-settings editable_mode=compat \
	  || $(VENV)/bin/pip install -q -e ".[test]"
	$(VENV)/bin/python -m compileall -q flowjobs  # bytecode even where PYTHONDONTWRITEBYTECODE is set
	touch $@

install: $(VENV)/.installed ## Create the virtualenv and install flowjobs with its test tools

postgres: ## Install PostgreSQL with apt if it is missing (the tests start their own server)
	@scripts/ensure-postgres

chromium: ## Install Chromium with apt if it is missing (the dashboard tests drive it headless)
	@scripts/ensure-chromium

lint: install ## Lint, format check, layer contract and type check (make test runs it first)
	$(VENV)/bin/ruff check flowjobs tests
	$(VENV)/bin/ruff format --check flowjobs tests
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy flowjobs

test: install postgres chromium lint ## Lint, then the whole test suite (SQLite, a throwaway PostgreSQL, headless Chromium; 2 processes)
	$(PY) -m pytest -q -n 2 -m "not faults" --durations=30

test-faults: install postgres ## The fault suite: kill storms, database outages, a network partition, cold starts, full disks (~4 min; CI runs it)
	$(PY) -m pytest -q -n 2 -m faults --durations=15

demo: install ## Run the main job on SQLite: trigger work, run the worker until done, show what ran
	@scripts/demo.sh $(FLOWJOBS)

bench: install postgres ## Measure throughput, latency and start-up on SQLite and PostgreSQL (JSON lines)
	$(PY) scripts/bench.py

$(PEERS_VENV)/.installed: Makefile
	python3 -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install -q "huey==3.5.*" "procrastinate==3.10.*" "psycopg[binary]==3.3.*"
	touch $@

bench-peers: install postgres $(PEERS_VENV)/.installed ## flowjobs beside huey, procrastinate and the bare driver: a markdown table of medians (~30 min)
	PYTHONPATH=$(CURDIR) PEERS_PYTHON=$(PEERS_VENV)/bin/python $(PY) scripts/bench_peers.py

bench-growth: install postgres ## Cost as work grows: 1M finished runs, 200k queued, the pruner, PostgreSQL 1-8 processes (JSON + table)
	$(PY) scripts/bench_growth.py

dist: install ## Build dist/flowjobs.pyz: one file that runs flowjobs on any Python 3.11 (x86_64 Linux)
	$(PY) scripts/build_dist.py -o dist/flowjobs.pyz

dist-check: dist postgres ## Build dist/flowjobs.pyz and run its tests on a bare Python (not part of make test: ~1 min to build)
	FLOWJOBS_TEST_PYZ=$(CURDIR)/dist/flowjobs.pyz $(PY) -m pytest -q tests/acceptance/test_dist.py

clean: ## Remove the virtualenv, demo database and caches
	rm -rf $(VENV) $(PEERS_VENV) demo .pytest_cache .hypothesis *.egg-info
