#!/bin/sh
# mlflow-kserve server entrypoint: MLServer from the venv the init container built, nothing else.
# - refuses to start without a complete environment (report.json is written last by `mlflow-kserve init`)
# - keeps every write under /tmp (metrics dir and working dir), so the root filesystem can be read-only
# - forwards SIGTERM/SIGINT to MLServer and exits with its code
# - exits 1 when MLServer exits 0 on its own: that is how MLServer reports a model that failed to load
# - when the venv is a link into the cache volume (cache.serveFromCache), holds a shared lock on the cache
#   entry's in-use file for as long as it runs: init containers of other pods do not evict a locked entry
set -u
ENV_DIR=${MLFLOW_KSERVE_ENV_DIR:-/mnt/env}
MODELS_DIR=${MLFLOW_KSERVE_MODELS_DIR:-/mnt/models}
MLSERVER="$ENV_DIR/venv/bin/mlserver"

if [ -L "$ENV_DIR/venv" ]; then
  target=$(readlink "$ENV_DIR/venv")
  entry=${target%/venv}
  gone="mlflow-kserve-server: the cached environment $entry is missing: is the cache volume mounted in this container at the same path, or was the entry evicted while this server was down? Delete the pod: its init container restores it"
  if [ ! -x "$target/bin/mlserver" ] || [ ! -f "$entry/in-use" ]; then
    echo "$gone" >&2
    exit 1
  fi
  exec 9<"$entry/in-use"
  if ! flock -s -w 60 9; then
    echo "mlflow-kserve-server: could not lock $entry/in-use within 60 s (needs flock from util-linux and a cache volume that supports flock)" >&2
    exit 1
  fi
  if [ ! -x "$target/bin/mlserver" ]; then  # evicted between the check and the lock
    echo "$gone" >&2
    exit 1
  fi
fi
if [ ! -x "$MLSERVER" ] || [ ! -f "$ENV_DIR/report.json" ]; then
  echo "mlflow-kserve-server: no complete environment in $ENV_DIR: did the model-init container finish? (kubectl logs -c model-init)" >&2
  exit 1
fi
export MLSERVER_METRICS_DIR="${MLSERVER_METRICS_DIR:-/tmp/mlserver-metrics}"
WORK_DIR=${MLFLOW_KSERVE_WORK_DIR:-/tmp/mlserver}
mkdir -p "$MLSERVER_METRICS_DIR" "$WORK_DIR" && cd "$WORK_DIR" || exit 1

stopping=0
child=
# The trap is set before MLServer starts: a SIGTERM that arrives in between is not lost.
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
"$MLSERVER" start "$MODELS_DIR" &
child=$!
[ "$stopping" = 1 ] && kill -TERM "$child" 2>/dev/null
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do  # a trapped signal interrupts wait: wait for MLServer itself
  wait "$child"
  code=$?
done
if [ "$stopping" = 0 ] && [ "$code" = 0 ]; then
  echo "mlflow-kserve-server: MLServer exited 0 without being stopped: the model failed to load (see above)" >&2
  exit 1
fi
exit "$code"
