# airflow-knative: every target installs what it needs (virtualenv, pinned
# dependencies, pinned helm) on a fresh machine.
#   make run   - the local stack: Airflow + KnativeExecutor + workers + gateway
#   make test  - lint, type checks and the whole test suite

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: all venv run test lint typecheck pytest clean

all: test

venv: $(STAMP)

# Reinstall whenever the dependency list or the pins change.
$(STAMP): pyproject.toml requirements/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $@

run: $(STAMP)
	$(VENV)/bin/airflow-knative dev $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache

# Component makefiles: mk/chart.mk (generate, helm), mk/image.mk (image, podman), mk/bench.mk (benchmarks).
-include mk/*.mk
