#!/bin/sh
# mlflow-kserve server entrypoint: MLServer from the venv the init container built, nothing else.
# - refuses to start without a complete environment (report.json is written last by `mlflow-kserve init`)
# - keeps every write under /tmp (metrics dir and working dir), so the root filesystem can be read-only
# - forwards SIGTERM/SIGINT to MLServer and exits with its code
# - exits 1 when MLServer exits 0 on its own: that is how MLServer reports a model that failed to load
set -u
ENV_DIR=${MLFLOW_KSERVE_ENV_DIR:-/mnt/env}
MODELS_DIR=${MLFLOW_KSERVE_MODELS_DIR:-/mnt/models}
MLSERVER="$ENV_DIR/venv/bin/mlserver"

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
