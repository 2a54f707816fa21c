#!/usr/bin/env bash
# The README's main job on the bundled model: train it, serve it with `mlflow-kserve run`, send a V2 request,
# check the answer, stop the server. Run from the repository root after `make setup` (`make demo` does both).
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=.venv/bin
WORK=${WORK:-$PWD/.cache/demo}
PORT=${PORT:-8080}
mkdir -p "$WORK"

$BIN/python examples/iris/train.py "$WORK/iris-model"
$BIN/mlflow-kserve run --model-uri "$WORK/iris-model" --name iris-model --port "$PORT" \
  --grpc-port $((PORT + 1)) --metrics-port $((PORT + 2)) --work-dir "$WORK/run" &
server=$!
trap 'kill -INT $server 2>/dev/null; wait $server' EXIT

for _ in $(seq 1 600); do
  curl -sf "localhost:$PORT/v2/models/iris-model/ready" >/dev/null && break
  kill -0 $server 2>/dev/null || { echo "mlflow-kserve run exited" >&2; exit 1; }
  sleep 0.5
done
echo "request: $(tr -d '\n' < examples/iris/request.json)"
answer=$(curl -sf -H 'content-type: application/json' -d @examples/iris/request.json \
  "localhost:$PORT/v2/models/iris-model/infer")
echo "answer:  $answer"
$BIN/python -c 'import json,sys; d=json.loads(sys.argv[1])["outputs"][0]["data"]; assert d == [0, 2], d; print("OK: setosa, virginica")' "$answer"
