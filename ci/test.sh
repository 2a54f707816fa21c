#!/usr/bin/env bash
# Everything CI runs after `make setup` (`make test` calls this; .ci/run calls `make test`), phase by phase, each
# timed on a line of its own and in a table at the end:
#   lint          ruff check and ruff format --check
#   unit          pytest -m "not e2e and not network", with no network (ci/offline.sh): seconds, no installs
#   e2e-tests     pytest -m "network or e2e" (real indexes, real installs, real servers), on PYTEST_WORKERS
#                 pytest-xdist workers (default 2), one module per worker at a time (--dist loadscope: a module's
#                 servers start once)
#   release-test  tests/test_release.py: `make release` to a local OCI registry, the container e2e on its images
#   container-e2e ci/e2e: the chart's pods run with podman
# Every phase runs even when one before it failed (one run tells everything); the exit code is the first failure's.
# PHASES="lint unit" runs only those, in that order.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTEST=(.venv/bin/pytest -p no:cacheprovider --durations=30)
WORKERS=${PYTEST_WORKERS:-2}
PHASES=${PHASES:-lint unit e2e-tests release-test container-e2e}

run_phase() {
  case "$1" in
    lint) .venv/bin/ruff check . && .venv/bin/ruff format --check . ;;
    unit) bash ci/offline.sh "${PYTEST[@]}" -m "not e2e and not network" -n "$WORKERS" --dist loadscope ;;
    e2e-tests) "${PYTEST[@]}" -m "network or e2e" -n "$WORKERS" --dist loadscope --ignore tests/test_release.py ;;
    release-test) "${PYTEST[@]}" -m e2e tests/test_release.py ;;
    container-e2e) bash ci/e2e ;;
    *) echo "unknown phase '$1' (phases: lint unit e2e-tests release-test container-e2e)" >&2; return 2 ;;
  esac
}

first_failure=0
table=()
for name in $PHASES; do
  echo "=== phase $name"
  start=$SECONDS
  run_phase "$name"
  code=$?
  took=$((SECONDS - start))
  echo "=== phase $name took ${took}s (exit $code)"
  table+=("$(printf '%-14s %6ss  exit %s' "$name" "$took" "$code")")
  if [ "$code" != 0 ] && [ "$first_failure" = 0 ]; then first_failure=$code; fi
done
echo
echo "phase          seconds"
printf '%s\n' "${table[@]}"
exit "$first_failure"
