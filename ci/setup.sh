#!/usr/bin/env bash
# `make setup` / `make setup-dev`: .venv (ci/venv.sh: made with PYTHON, uv inside) with mlflow-kserve (editable)
# and the given extras, installed by that uv.
#
#   bash ci/setup.sh PYTHON EXTRAS        e.g.  bash ci/setup.sh python3 demo
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
EXTRAS=${2:-demo}
VENV=${VENV:-.venv}

bash ci/venv.sh "$PY"
printf '==> %s\n' "installing mlflow-kserve (editable) with [$EXTRAS] into $VENV"
# uv's summary lines (resolved, downloading large wheels, installed) without one line per package.
"$VENV/bin/uv" pip install --python "$VENV/bin/python" --compile-bytecode -e ".[$EXTRAS]" 2>&1 |
  { grep -v '^ [-+~] ' || true; }
# As the images ship it: no command pays to compile our own modules on its first start.
"$VENV/bin/python" -m compileall -q initcontainer
