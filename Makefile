# Storefence: two commands do all the set-up on a fresh machine.
#   make demo   - simulate a demo shop, run the extract and alert DAGs, deliver to a local inbox
#   make test   - run the whole test suite
#   make up     - the pack on Airflow's own processes, in the background, with a live shop (make down stops it)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export STOREFENCE_HOME := $(CURDIR)

.PHONY: demo test system-packages up down test-clocks setup airflow-home lint lock bench bench-simulator bench-extract bench-rules bench-alerting bench-faults bench-live bench-detection bench-cycle bench-load-bookkeeping bench-scheduler-cycle bench-evidence bench-scale-out bench-shop-scaling bench-alerts-page clean ui

demo: airflow-home
	$(BIN)/storefence demo

# Two pytest-xdist workers (TEST_WORKERS=0: one process); tests/conftest.py keeps the tests that
# share a built shop on one worker and lets the real-Airflow tests take turns.
TEST_WORKERS ?= 2
test: $(VENV)/.installed system-packages
	$(BIN)/pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

# What the tests need from Debian: PgBouncer (tests/warehouse/test_pgbouncer.py); Chromium, its
# driver and the CJK fonts of the Chinese screenshots (tests/ui: the alerts page in a real browser).
# Installed when missing and this runs as root (CI does); otherwise those tests skip, or fail under
# CI=true. A package counts as installed when its command is on the PATH or the file it installs
# (package:file below) exists; fonts-noto-cjk has no command, chromium-driver's is chromedriver.
SYSTEM_PACKAGES := pgbouncer:/usr/sbin/pgbouncer chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver \
                   fonts-noto-cjk:/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc
system-packages:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  command -v $${p%%:*} >/dev/null || [ -e $${p#*:} ] || missing="$$missing $${p%%:*}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing \
	    || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; }; \
	  else echo "make test: not root, so$$missing not installed: the tests that need it skip (fail under CI=true)"; fi; \
	fi

# `storefence up` does the set-up of airflow-home itself, after choosing the metadata DB
# (PostgreSQL when it answers), so a fresh home is not first migrated on SQLite.
# Options: make up UP_ARGS="--speed 60" (or --no-shop, --port P, --metadata-db URL).
up: $(VENV)/.installed
	$(BIN)/storefence up $(UP_ARGS)

down: $(VENV)/.installed
	$(BIN)/storefence down

# The tests that read the wall clock, under each pinned clock of tests/test_clocks.py in turn.
test-clocks: $(VENV)/.installed
	for clock in 2026-12-02T16:05:00Z 2026-12-07T01:30:00Z 2026-11-30T15:59:30Z 2026-12-31T23:59:30Z; do \
	  echo "== STOREFENCE_TEST_CLOCK=$$clock"; STOREFENCE_TEST_CLOCK=$$clock $(BIN)/pytest -q -m clock_sensitive || exit 1; \
	done

setup: airflow-home

# The alerts page (plugins/threshold_operators/ui): TypeScript + React, built with Vite into the one
# UMD file Airflow's UI loads, dist/storefence-alerts.umd.js, which is committed with the hash of its
# sources (dist/SOURCES.sha256; tests/ui/test_bundle.py fails when they drift). Needs Node 20.19+.
ui:
	cd plugins/threshold_operators/ui && npm ci && npm run build

# The venv is rebuilt whenever the lock file or the package description changes.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

# Migrated metadata DB, the DuckDB pool and the default warehouse connection (idempotent).
airflow-home: $(VENV)/.installed
	$(BIN)/storefence airflow-setup

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/storefence lint

lock:
	rm -rf /tmp/storefence-lock && $(PYTHON) -m venv /tmp/storefence-lock
	/tmp/storefence-lock/bin/pip install --quiet -r requirements.in
	{ echo "# Pinned, tested set. Generated from requirements.in by 'make lock'; do not edit by hand."; \
	  /tmp/storefence-lock/bin/pip freeze --exclude-editable; } > requirements.txt

bench: bench-simulator bench-extract bench-rules bench-alerting bench-faults bench-live bench-detection bench-cycle bench-load-bookkeeping bench-scheduler-cycle bench-evidence bench-scale-out bench-shop-scaling bench-alerts-page

bench-simulator: airflow-home
	$(BIN)/python bench/simulator_bench.py

bench-extract: airflow-home
	$(BIN)/python bench/extract_bench.py

bench-rules: airflow-home
	$(BIN)/python bench/rules_bench.py

bench-alerting: airflow-home
	$(BIN)/python bench/alerting_bench.py

# The fault-injection suite's figures (faults, alerts, messages expected, delivered, duplicated, lost, refused).
bench-faults: $(VENV)/.installed
	CI=true STOREFENCE_FAULT_FIGURES=$(CURDIR)/bench/results/fault_suite.json $(BIN)/pytest -q tests/alerting/test_faults.py

# The pack on Airflow's own scheduler with the live shop (PostgreSQL on 127.0.0.1:5432), against the
# same cycle in dag.test(): latency, alert-DAG wall time, tasks a minute, pool waits (about 35 min;
# LIVE_ARGS="--quick" for a 6-minute smoke run).
bench-live: $(VENV)/.installed
	$(BIN)/python bench/live_bench.py $(LIVE_ARGS)

# Detection delay per incident, data time from its start to the alert: the hourly catalogue before
# issue 13 and the current one side by side, on the demo shop (about 10 minutes).
bench-detection: $(VENV)/.installed
	$(BIN)/python bench/detection_delay.py

# One 5-minute cycle of the whole catalogue over 10 shops x 20,000 SKUs against its floor, for
# 30 and 365 days of history (builds the warehouses once into bench/.cache/scale; see the script).
bench-cycle: $(VENV)/.installed
	$(BIN)/python bench/cycle_cost.py $(CYCLE_ARGS)

# What the rollups' bookkeeping adds to a load (the marks, and the lookup of the versions an upsert
# replaces, for the tables a rollup reads): the same slices landed with and without it, alternately (about 3 minutes once the 30-day
# warehouse is cached).
bench-load-bookkeeping: $(VENV)/.installed
	$(BIN)/python bench/load_bookkeeping.py
	$(BIN)/python bench/load_bookkeeping.py --days 365 --out bench/results/load_bookkeeping_365.json

# The same cycle under the real scheduler (LocalExecutor, PostgreSQL metadata DB on 127.0.0.1:5432):
# the wall time of all domains after one extract, against the cycle in one process (about 3 minutes
# once the 30-day warehouse is cached).
bench-scheduler-cycle: $(VENV)/.installed
	$(BIN)/python bench/scheduler_cycle.py $(SCHEDULER_CYCLE_ARGS)

# What the data holds in the first hours of the event-count incidents (the day rules' 2-hour target).
bench-evidence: $(VENV)/.installed
	$(BIN)/python bench/evidence.py

# The live cycle on LocalExecutor and on CeleryExecutor with 1 and 2 workers (Redis, PostgreSQL).
bench-scale-out: $(VENV)/.installed
	$(BIN)/python bench/scale_out.py $(SCALE_OUT_ARGS)

# One 5-minute cycle of the catalogue on PostgreSQL (127.0.0.1:5432, database test) for 1, 10 and 100
# shops at 200 SKUs and 300 orders a day per shop, as ratios against 1 shop (DuckDB warehouses cached in
# bench/.cache/scale, copied into schemas of their own and dropped; about 15 minutes).
bench-shop-scaling: $(VENV)/.installed
	$(BIN)/python bench/shop_scaling.py $(SHOP_SCALING_ARGS)

# The alerts page in Debian's Chromium on a real API server (PostgreSQL metadata DB on 127.0.0.1:5432)
# with 100 and 10,000 active alerts (the alerting bench's burst): first render, refresh, an alert's
# chart, the API's times and the bundle's size, against Airflow's own home page and /api/v2/version
# (Debian's chromium: make system-packages; about 4 minutes; ALERTS_PAGE_ARGS="--runs 3 --sizes 100").
bench-alerts-page: $(VENV)/.installed
	PYTHONPATH=$(CURDIR)/plugins $(BIN)/python bench/alerts_page.py $(ALERTS_PAGE_ARGS)

clean:
	rm -rf $(VENV) .airflow
