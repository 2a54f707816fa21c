#!/bin/sh
# mlflow-kserve server entrypoint: the server report.json names, from the venv the init container built.
# - refuses to start without a complete environment (report.json is written last by `mlflow-kserve init`)
# - backend mlserver: `mlserver start` on /mnt/models (V2 REST and gRPC; MLSERVER_DEBUG=false unless set: no
#   tracebacks in answers); backend mlflow: the model's own MLflow
#   scoring server with the V2 routes, `python -m mlflow_kserve_server start /mnt/models`, the package from
#   /mnt/env/lib on PYTHONPATH (init copies it there; it is not installed into the venv)
# - keeps every write under /tmp (metrics dir and working dir), so the root filesystem can be read-only
# - forwards SIGTERM/SIGINT to the server and exits with its code
# - exits 1 when the server exits 0 on its own: that is how MLServer reports a model that failed to load
# - when the venv is a link into the cache volume (cache.serveFromCache), holds a shared lock on the cache
#   entry's in-use file for as long as it runs: init containers of other pods do not evict a locked entry
set -u
ENV_DIR=${MLFLOW_KSERVE_ENV_DIR:-/mnt/env}
MODELS_DIR=${MLFLOW_KSERVE_MODELS_DIR:-/mnt/models}
PYTHON="$ENV_DIR/venv/bin/python"
incomplete="mlflow-kserve-server: no complete environment in $ENV_DIR: did the model-init container finish? (kubectl logs -c model-init)"

if [ -L "$ENV_DIR/venv" ]; then
  target=$(readlink "$ENV_DIR/venv")
  entry=${target%/venv}
  gone="mlflow-kserve-server: the cached environment $entry is missing: is the cache volume mounted in this container at the same path, or was the entry evicted while this server was down? Delete the pod: its init container restores it"
  if [ ! -x "$target/bin/python" ] || [ ! -f "$entry/in-use" ]; then
    echo "$gone" >&2
    exit 1
  fi
  exec 9<"$entry/in-use"
  if ! flock -s -w 60 9; then
    echo "mlflow-kserve-server: could not lock $entry/in-use within 60 s (needs flock from util-linux and a cache volume that supports flock)" >&2
    exit 1
  fi
  if [ ! -x "$target/bin/python" ]; then  # evicted between the check and the lock
    echo "$gone" >&2
    exit 1
  fi
fi
if [ ! -x "$PYTHON" ] || [ ! -f "$ENV_DIR/report.json" ]; then
  echo "$incomplete" >&2
  exit 1
fi
# -I -S: the standard library only (json), nothing from the venv or PYTHONPATH. Reports written before there were
# two backends name none: they were MLServer's. The model's name has no spaces (init validates it).
info=$("$PYTHON" -I -S -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r.get("backend", {}).get("name", "mlserver"), r.get("name", ""))' "$ENV_DIR/report.json") || exit 1
backend=${info%% *}
name=${info#* }
export MLSERVER_METRICS_DIR="${MLSERVER_METRICS_DIR:-/tmp/mlserver-metrics}"
WORK_DIR=${MLFLOW_KSERVE_WORK_DIR:-/tmp/mlserver}
mkdir -p "$MLSERVER_METRICS_DIR" "$WORK_DIR" && cd "$WORK_DIR" || exit 1
case "$backend" in
  mlserver)
    server=MLServer
    [ -x "$ENV_DIR/venv/bin/mlserver" ] || { echo "$incomplete" >&2; exit 1; }
    # MLServer warns on every start when the model's name differs from its settings folder's name ("models"):
    # start it on a folder named after the model, a link to the models dir. Its logging config (init writes it)
    # keeps uvicorn's repeated start/stop lines out, unless the environment names its own.
    root=$MODELS_DIR
    if [ -n "$name" ]; then
      mkdir -p "$WORK_DIR/by-name" && ln -sfn "$MODELS_DIR" "$WORK_DIR/by-name/$name" && root="$WORK_DIR/by-name/$name"
    fi
    if [ -f "$ENV_DIR/mlserver-logging.json" ]; then
      export MLSERVER_LOGGING_SETTINGS="${MLSERVER_LOGGING_SETTINGS:-$ENV_DIR/mlserver-logging.json}"
    fi
    # MLServer's default debug=true answers an unexpected 500 with a traceback: off unless the operator sets it
    export MLSERVER_DEBUG="${MLSERVER_DEBUG:-false}"
    set -- "$ENV_DIR/venv/bin/mlserver" start "$root" ;;
  mlflow)
    server="MLflow's scoring server"
    [ -f "$ENV_DIR/lib/mlflow_kserve_server/__main__.py" ] || { echo "$incomplete" >&2; exit 1; }
    export PYTHONPATH="$ENV_DIR/lib"
    set -- "$PYTHON" -m mlflow_kserve_server start "$MODELS_DIR" ;;
  *)
    echo "mlflow-kserve-server: $ENV_DIR/report.json names an unknown backend '$backend': use the server image of the init image's version" >&2
    exit 1 ;;
esac
echo "mlflow-kserve-server: starting $server (backend $backend)" >&2

stopping=0
child=
# The trap is set before the server starts: a SIGTERM that arrives in between is not lost.
trap 'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null' TERM INT
"$@" &
child=$!
[ "$stopping" = 1 ] && kill -TERM "$child" 2>/dev/null
wait "$child"
code=$?
while kill -0 "$child" 2>/dev/null; do  # a trapped signal interrupts wait: wait for the server itself
  wait "$child"
  code=$?
done
if [ "$stopping" = 0 ] && [ "$code" = 0 ]; then
  echo "mlflow-kserve-server: $server exited 0 without being stopped: the model failed to load (see above)" >&2
  exit 1
fi
exit "$code"
