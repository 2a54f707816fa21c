#!/usr/bin/env bash
# The first step of `make setup`: a venv ($VENV, default .venv) with uv inside it, from nothing but a Python
# 3.10–3.13, the distribution's own included (PEP 668: nothing is installed into it, only a venv made from it).
#
#   bash ci/venv.sh PYTHON        e.g.  bash ci/venv.sh /usr/bin/python3
#
# `uv venv` when uv is on PATH (no ensurepip needed), else `python -m venv` (on Debian and Ubuntu that needs the
# python3-venv package: without it, say so and make nothing). A venv made earlier with uv inside is reused; one of
# another Python minor version is made again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-python3}
VENV=${VENV:-.venv}

say() { printf '==> %s\n' "$*"; }
die() { printf 'make setup: %s\n' "$*" >&2; exit 1; }

command -v "$PY" >/dev/null || die "no '$PY' found; fix: install Python 3.10–3.13, or name one: make setup PYTHON=/usr/bin/python3.12"
version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])') || die "'$PY' does not run"
if ! "$PY" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))'; then
  die "$PY is Python $version, mlflow-kserve needs 3.10–3.13; fix: name another: make setup PYTHON=python3.12"
fi

have=$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true)
if [ -n "$have" ] && [ -x "$VENV/bin/uv" ] && [ "$have" = "$version" ]; then
  say "using $VENV (Python $have, uv $("$VENV/bin/uv" --version | cut -d' ' -f2))"
else
  if [ -e "$VENV" ]; then
    say "making $VENV again: it is not a Python $version venv with uv inside"
    rm -rf "$VENV"
  fi
  if command -v uv >/dev/null && uv --version >/dev/null 2>&1; then
    say "creating $VENV with $PY (Python $version) by uv venv, and uv inside it"
    uv venv -q --python "$PY" "$VENV"
    uv pip install -q --python "$VENV/bin/python" uv
  else
    no_venv="$PY cannot create a virtual environment: it has no ensurepip module; fix: sudo apt install python$version-venv (Debian, Ubuntu), or install uv (https://docs.astral.sh/uv/), then make setup again"
    "$PY" -c 'import ensurepip, venv; ensurepip.version()' 2>/dev/null || die "$no_venv"
    say "creating $VENV with $PY -m venv (Python $version), and uv inside it"
    "$PY" -m venv "$VENV" || { rm -rf "$VENV"; die "$no_venv"; }
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
  fi
fi
