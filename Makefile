# Developer entry points. `make setup` once, then `make test` (what CI runs via .ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit e2e

setup:  ## venv (.venv) with the package (editable) and test deps; helm 3/4, helmfile, checkov in .tools/bin
	$(PYTHON) -m pip install -q --disable-pip-version-check uv
	$(PYTHON) -m uv venv -q --allow-existing $(VENV)
	$(PYTHON) -m uv pip install -q --python $(BIN)/python -e '.[test]'
	bash ci/install-tools.sh

demo: setup  ## train the bundled iris model, serve it with `mlflow-kserve run`, send a V2 request
	bash examples/iris/demo.sh

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit:  ## everything but the slow end-to-end tests
	$(BIN)/pytest -m "not e2e"

test: lint  ## all tests, the e2e-marked ones included (real installs, real MLServer), then the container e2e
	$(BIN)/pytest
	bash ci/e2e

e2e:  ## the chart's rendered pod run with podman: helm template -> pod -> init -> MLServer -> V2 answer
	bash ci/e2e
