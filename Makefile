# Developer entry points. `make setup` once, then `make test` (what CI runs via .ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint unit e2e

setup:  ## venv with the package (editable) and test deps, plus helm/helmfile/checkov in .tools/
	$(PYTHON) -m pip install -q --disable-pip-version-check uv
	$(PYTHON) -m uv venv -q --allow-existing $(VENV)
	$(PYTHON) -m uv pip install -q --python $(BIN)/python -e '.[test]'
	bash ci/install-tools.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit:  ## everything but the slow end-to-end tests
	$(BIN)/pytest -m "not e2e"

test: lint  ## all tests: fast ones, then the e2e ones (real installs, MLServer, containers)
	$(BIN)/pytest
	bash ci/e2e

e2e:  ## the chart's rendered pod run with podman: helm template -> pod -> init -> MLServer -> V2 answer
	bash ci/e2e
