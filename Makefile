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

.PHONY: setup repro test ui bench lint clean-store server server-stop

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock -e ".[dev]"
	@touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadscope

ui: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=$${MLFLOW_DISABLE_TELEMETRY:-true} $(BIN)/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlflow.db" \
		--default-artifact-root "$(CURDIR)/mlartifacts" --port $${PORT:-5000} --workers 1

bench: $(STAMP)
	$(BIN)/python benchmarks/pipeline.py

lint: $(STAMP)
	$(BIN)/ruff check sluice stages tests benchmarks
	$(BIN)/ruff format --check sluice stages tests benchmarks
	$(BIN)/lint-imports

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
