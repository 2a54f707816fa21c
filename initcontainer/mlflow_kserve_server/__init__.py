"""mlflow_kserve_server: the ``mlflow`` serving backend of mlflow-kserve, the project's reference V2
implementation. MLflow's own scoring server (the FastAPI app of ``mlflow.pyfunc.scoring_server``, MLflow >= 2.21.0)
for the model, run by uvicorn, with the Open Inference Protocol (V2) REST routes added beside ``/invocations``
(JSON, the binary tensor data extension, gzip/deflate bodies), V2 gRPC with ``--grpc``, and Prometheus metrics.

One internal request/response model (tensors.py); each transport only translates into and out of it: REST JSON and
binary (rest_codec.py, raw.py, compression.py; routes in rest.py) and gRPC (grpc_codec.py, grpc_proto.py;
grpc_server.py). dataplane.py does the work once: decode.py (request -> the model's input), model.py (predict),
encode.py (prediction -> outputs named and shaped as signature.py's metadata says).

It runs inside the model's own venv and is never installed there: init copies this folder to
``<env_dir>/lib/mlflow_kserve_server/`` and the server starts as

    PYTHONPATH=<env_dir>/lib <venv>/bin/python -m mlflow_kserve_server start <models_dir> \\
        [--host 0.0.0.0] [--port 8080] [--workers 1] [--metrics-port 8082] [--grpc] [--grpc-port 8081] \
        [--max-request-bytes N] [--log-level info]

(each flag also from ``MLFLOW_KSERVE_SERVER_<FLAG>``). It imports only the standard library, mlflow and what
mlflow requires (fastapi/starlette, uvicorn, numpy, pandas, protobuf); grpcio only with --grpc (init --grpc adds
it to the venv), orjson only when the venv has it (an optional accelerator: serving_stack.toml).

Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad flags, no model-settings.json, an MLflow older than 2.21, --grpc
without grpcio, or a port that is taken;
8 the model failed to load (the error on stderr).

Importing modules has no side effects: to write their bytecode in the venv, import
``mlflow_kserve_server.serve`` and ``mlflow_kserve_server.app`` (``app`` pulls in every module that serves).
"""
