# Developer entry points. `make setup` once, then `make unit` while you work (about a minute, no network) and
# `make test` before you push (what CI runs via .ci/run: every tier, the container e2e and the release test).
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

unit:  ## the fast tier: no network, no model environments built (ci/offline.sh proves it), on two workers
	bash ci/offline.sh $(BIN)/pytest -m "not e2e and not network" -n 2 --dist loadscope

test:  ## everything CI runs, phase by phase with timings (ci/test.sh): lint, unit, e2e-tests, release-test, container-e2e
	bash ci/test.sh

e2e:  ## the chart's rendered pod run with podman: helm template -> pod -> init -> MLServer -> V2 answer
	bash ci/e2e

release:  ## images per Python minor + chart, pushed to REGISTRY as VERSION, with SBOMs (ci/release.sh)
	REGISTRY="$(REGISTRY)" VERSION="$(VERSION)" PYTHON_VERSIONS="$(PYTHON_VERSIONS)" PLATFORMS="$(PLATFORMS)" \
	  bash ci/release.sh
