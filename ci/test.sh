#!/usr/bin/env bash
# Everything CI runs after `make setup` (`make test` calls this; .ci/run calls `make test`), phase by phase, each
# timed on a line of its own and in a table at the end:
#   lint          ruff check and ruff format --check
#   unit          pytest -m "not e2e and not network", with no network (ci/offline.sh): seconds, no installs
#   e2e-tests     pytest -m "network or e2e" (real indexes, real installs, real servers), the release test
#                 (tests/test_release.py: `make release` to a local OCI registry, the container e2e on its images)
#                 among them, on PYTEST_WORKERS pytest-xdist workers (default 3), one module per worker at a time
#                 (--dist loadscope: a module's servers start once); then each module's seconds, the release
#                 test's first
#   container-e2e ci/e2e: the chart's pods run with podman
# Two lanes run side by side: the tests (lint, unit, e2e-tests) and the container e2e. Most of a phase is waiting
# (on the package index, on a server or a pod starting), so one lane alone leaves the machine mostly idle. The
# container lane's output is printed when it ends. LANES=1 runs the phases one after the other.
# Every phase runs even when one before it failed (one run tells everything); the exit code is the first failure's.
# PHASES="lint unit" runs only those, in that order, in one lane.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PYTEST=(.venv/bin/pytest -p no:cacheprovider --durations=30)
WORKERS=${PYTEST_WORKERS:-3}
results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT

run_phase() {
  case "$1" in
    lint) .venv/bin/ruff check . && .venv/bin/ruff format --check . ;;
    unit) bash ci/offline.sh "${PYTEST[@]}" -m "not e2e and not network" -n 2 --dist loadscope ;;
    e2e-tests) "${PYTEST[@]}" -m "network or e2e" -n "$WORKERS" --dist loadscope --junitxml "$results/e2e.xml"
      local code=$?
      .venv/bin/python ci/module_seconds.py "$results/e2e.xml" tests/test_release.py
      return $code ;;
    container-e2e) bash ci/e2e ;;
    *) echo "unknown phase '$1' (phases: lint unit e2e-tests container-e2e)" >&2; return 2 ;;
  esac
}

phases() {  # run the phases named, in order; each one's seconds and exit code go to $results/<n>-<phase>
  for name in "$@"; do
    echo "=== phase $name"
    local start=$SECONDS code
    run_phase "$name"
    code=$?
    echo "=== phase $name took $((SECONDS - start))s (exit $code)"
    echo "$((SECONDS - start)) $code" > "$results/$(date +%s%N)-$name"
  done
}

if [ -n "${PHASES:-}" ] || [ "${LANES:-2}" = 1 ]; then
  # shellcheck disable=SC2086  # a list of phase names
  phases ${PHASES:-lint unit e2e-tests container-e2e}
else
  container_log="$results/container-lane.log"
  phases container-e2e > "$container_log" 2>&1 &
  containers=$!
  echo "=== the container lane (container-e2e) runs beside these phases; its output follows them"
  phases lint unit e2e-tests
  wait "$containers"
  echo "=== the container lane's output"
  cat "$container_log"
fi

echo
echo "phase          seconds  exit"
first_failure=0 total=0
for file in "$results"/[0-9]*; do
  read -r took code < "$file"
  name=$(basename "$file")
  printf '%-14s %7s  %4s\n' "${name#*-}" "$took" "$code"
  total=$((total + took))
  if [ "$code" != 0 ] && [ "$first_failure" = 0 ]; then first_failure=$code; fi
done
echo "the phases took ${total}s; with the lanes side by side, ${SECONDS}s passed"
exit "$first_failure"
