# Developer entry points. `make demo` to see it work. To work on it: `make setup-dev` once, `make unit` while you
# work (about a minute, no network), `make test` before you push (what CI runs via .ci/run: every tier, the release
# test and the container e2e). Needs only make and a Python 3.10–3.13 (PYTHON=...; the distribution's own is fine).
PYTHON ?= python3
PYTHON_VERSIONS ?= 3.10 3.11 3.12 3.13
PLATFORMS ?= linux/amd64 linux/arm64
PORT ?= 8080
VENV := .venv
BIN := $(VENV)/bin
DEV_EXTRAS := demo,test,docs,gcs,azure

.PHONY: setup setup-dev demo docs test lint unit e2e release

setup:  ## .venv (made with PYTHON, uv inside) with mlflow-kserve (editable) and what the demo needs
	@bash ci/setup.sh "$(PYTHON)" demo

setup-dev:  ## setup + the test toolchain: store clients, test and docs packages; helm & co, checkov, azurite in .tools
	@bash ci/setup.sh "$(PYTHON)" $(DEV_EXTRAS)
	@PYTHON=$(BIN)/python bash ci/install-tools.sh

demo: setup  ## train the bundled iris model, serve it with `mlflow-kserve run`, send a V2 request (PORT=8080)
	@$(BIN)/python examples/iris/demo.py --port $(PORT)

docs:  ## the reference pages regenerated, then the documentation site into site/ (`.venv/bin/mkdocs serve`: preview)
	@bash ci/setup.sh "$(PYTHON)" demo,docs
	$(BIN)/python ci/gen_cli_docs.py
	$(BIN)/python ci/gen_chart_docs.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: setup-dev  ## the fast tier: no network, no model environments built (ci/offline.sh proves it), two workers
	bash ci/offline.sh $(BIN)/pytest -m "not e2e and not network" -n 2 --dist loadscope

test: setup-dev  ## everything CI runs, phase by phase with timings (ci/test.sh): lint, unit, e2e-tests, container-e2e
	bash ci/test.sh

e2e:  ## the chart's rendered pod run with podman: helm template -> pod -> init -> MLServer -> V2 answer
	bash ci/e2e

release:  ## images per Python minor + chart, pushed to REGISTRY as VERSION, with SBOMs (ci/release.sh)
	REGISTRY="$(REGISTRY)" VERSION="$(VERSION)" PYTHON_VERSIONS="$(PYTHON_VERSIONS)" PLATFORMS="$(PLATFORMS)" \
	  bash ci/release.sh
