# Developer entry points. `make setup` once, then `make test` (what CI runs via .ci/run).
PYTHON ?= python3
PYTHON_VERSIONS ?= 3.10 3.11 3.12 3.13
PLATFORMS ?= linux/amd64 linux/arm64
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint unit e2e release

setup:  ## venv (.venv): the package (editable) with every store client, test deps; helm & co, azurite in .tools
	$(PYTHON) -m pip install -q --disable-pip-version-check uv
	$(PYTHON) -m uv venv -q --allow-existing $(VENV)
	$(PYTHON) -m uv pip install -q --compile-bytecode --python $(BIN)/python -e '.[test,gcs,azure]'
	$(BIN)/python -m compileall -q initcontainer  # as the images ship it: no command pays to compile our modules
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

release:  ## images per Python minor + chart, pushed to REGISTRY as VERSION, with SBOMs (ci/release.sh)
	REGISTRY="$(REGISTRY)" VERSION="$(VERSION)" PYTHON_VERSIONS="$(PYTHON_VERSIONS)" PLATFORMS="$(PLATFORMS)" \
	  bash ci/release.sh
