# sluice: `make repro` runs the pipeline, `make test` the whole suite; both set up .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed

# Stages run as `python -m stages.<name>`: the venv's python must come first on PATH.
export PATH := $(BIN):$(PATH)
export DVC_NO_ANALYTICS := 1
export MPLBACKEND := Agg

.PHONY: setup lock repro test check ui bench lint params-doc clean-store server server-stop

# The lock pins everything `.[dev]` needs with its hashes: pip checks each file it installs.
# The package itself then goes in editable, built by the lock's setuptools (no download).
# `pip check` fails on a dependency added to pyproject.toml but not locked yet (`make lock`).
LOCK ?= requirements.lock
PIP := $(BIN)/python -m pip --disable-pip-version-check

setup: $(STAMP)

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $(LOCK)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check
	@touch $(STAMP)

# Rewrites the lock from pyproject.toml for CPython 3.11 on x86-64 Linux, from the indexes pip
# uses on the reference machine (`pip config list`; torch's CPU wheel from /opt/wheels). Pins
# still allowed by pyproject.toml are kept; `make lock UPGRADE=1` moves each to its newest.
# Other indexes (LOCK_INDEXES=...) and a CUDA build of torch: docs/dependencies.md.
LOCK_INDEXES ?= --index https://pypi.org/simple --index file:///opt/pypi/simple \
	--index file:///opt/pypi-more/simple --find-links /opt/wheels
LOCK_CMD = uv pip compile pyproject.toml --extra dev --generate-hashes --no-config \
	--python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--index-strategy unsafe-best-match $(LOCK_INDEXES) \
	$(if $(TORCH_BACKEND),--torch-backend $(TORCH_BACKEND)) -o $(LOCK)

lock: | $(BIN)/uv
	$(BIN)/$(LOCK_CMD) $(if $(UPGRADE),--upgrade) --quiet \
		--custom-compile-command "$(strip $(LOCK_CMD))"

# uv alone, as the committed lock pins it: enough for `make lock` before any `make setup`.
$(BIN)/uv:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r <(sed -n '/^uv==/,/# via/p' requirements.lock)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope

# The inner loop: lint and the unit tests (no pipeline run, no server).
check: lint
	$(BIN)/python -m pytest -n 2 --dist loadscope tests/unit

ui: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} $(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlartifacts" --port $${PORT:-5000} --workers 1

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

# deptry (pyproject.toml): the package imports only what it declares outside the dev extra;
# tests and benchmarks may import the dev extra too.
lint: $(STAMP)
	$(BIN)/ruff check sluice stages tests benchmarks
	$(BIN)/ruff format --check sluice stages tests benchmarks
	$(BIN)/deptry sluice stages
	$(BIN)/deptry tests benchmarks --ignore DEP002,DEP004
	$(BIN)/lint-imports

# docs/params.md, the reference of every params.yaml key, from the docstrings in sluice/config/
# (a unit test fails while the page is stale).
params-doc: $(STAMP)
	$(BIN)/python -m sluice.config.reference

# A team tracking server: PostgreSQL + `mlflow server` with basic auth and proxied artifacts,
# on 127.0.0.1; state (database, logs, credentials) in .sluice/server/ (`sluice server --help`).
# Ends with the four `export` lines to paste (the admin password itself on the first start
# only). `make server PORT=5050`, `ARTIFACTS=s3://bucket/mlflow` (with the
# AWS_* and MLFLOW_S3_ENDPOINT_URL variables set) for artifacts on S3.
server: $(STAMP)
	@$(BIN)/sluice server start --port $(or $(PORT),5000) \
		--state-dir "$(or $(SERVER_DIR),.sluice/server)" \
		$(if $(ARTIFACTS),--artifacts-destination "$(ARTIFACTS)")

server-stop:
	@$(BIN)/sluice server stop --state-dir "$(or $(SERVER_DIR),.sluice/server)"
