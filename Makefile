# Two commands for a new user (see README):
#   make run   - create .venv, generate the POLA sample if missing, run the pipeline on a local Ray
#   make test  - create .venv (and the lint tools venv), run the whole test suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
TOOLS := .venv-tools
DATASET ?= POLA
# Python 3.12 (3.11 works too): the first that exists of pyenv's 3.12, python3.12, python3.
PYTHON ?= $(shell for p in $$HOME/.pyenv/versions/3.12*/bin/python3.12 python3.12 python3; do \
	if command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then echo $$p; break; fi; done)
UV_VERSION := 0.13.9

.PHONY: help venv tools mlflow-server data run test test-fast rehearse check lint clean

help:
	@echo "make run    # install, generate data/$(DATASET) if missing, run python -m kon_ray.run +dataset=$(DATASET)"
	@echo "make test   # install, run the test suite (what CI runs)"

$(VENV)/.installed: requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: need Python >= 3.11 (python3.12 preferred)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync --quiet --compile-bytecode --require-hashes --python $(PY) requirements.lock
	$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	touch $@

venv: $(VENV)/.installed

# The MLflow server version infra/ runs (requirements-mlflow-server.lock), apart from .venv: the tests check the
# locked client against it (tests/tracking/test_server.py). Not needed to run the pipeline.
MLFLOW_SERVER := $(VENV)/mlflow-server
$(MLFLOW_SERVER)/.installed: requirements-mlflow-server.lock | venv
	rm -rf $(MLFLOW_SERVER)
	$(VENV)/bin/uv pip install --quiet --no-deps --require-hashes --python $(PY) --target $(MLFLOW_SERVER) \
		-r requirements-mlflow-server.lock
	touch $@

mlflow-server: $(MLFLOW_SERVER)/.installed

$(TOOLS)/.installed: requirements-tools.lock
	@test -n "$(PYTHON)" || { echo "make: need Python >= 3.11"; exit 1; }
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(TOOLS)/bin/uv pip sync --quiet --compile-bytecode --require-hashes --python $(TOOLS)/bin/python requirements-tools.lock
	touch $@

tools: $(TOOLS)/.installed

data/$(DATASET): | venv
	$(PY) -m kon_ray.synth +dataset=$(DATASET)

data: data/$(DATASET)

run: venv data/$(DATASET)
	$(PY) -m kon_ray.run +dataset=$(DATASET)

# Two pytest workers (pytest-xdist), a test file each at a time: one alone leaves a core idle through every
# in-process test and every wait on a subprocess; each worker has its own session Ray (tests/conftest.py).
PYTEST_WORKERS ?= 2
PYTEST := RAY_AUTH_MODE=disabled $(PY) -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: venv tools mlflow-server check
	$(PYTEST)

check: venv tools  # Python lint, types (pyproject.toml: [tool.ruff], [tool.mypy]) and layers; part of make test
	$(TOOLS)/bin/ruff check .
	$(TOOLS)/bin/mypy --python-executable $(PY)
	$(PY) scripts/check_layers.py  # imports point only down the layers (README, "Architecture")

lint: tools  # terraform fmt, checkov, actionlint (the tests run them too)
	bash scripts/check_infra.sh

test-fast: venv tools mlflow-server check
	$(PYTEST) -m "not slow"

rehearse: venv tools mlflow-server  # the cloud rehearsals' whole runs (README, "Rehearsed on this machine"): ~4-6 min
	$(PYTEST) -m rehearsal tests/cluster/test_cloud_rehearsal.py

clean:
	rm -rf outputs multirun mlflow.db mlruns .pytest_cache
